// Notes on the design
// -------------------
// See region.hpp for the contract. Implementation notes:
//   - The mapping is always a whole number of pages (mappedBytes_); byteLength_ is what the
//     caller sees. A new backing is sized to the rounded length, an existing one keeps its size.
//   - Create-or-open is race free: O_CREAT|O_EXCL first, and only on EEXIST a plain open, so
//     created() tells the truth even when two processes race to create the same name.
//   - A backing this call created is removed again when a later step (ftruncate, mmap) fails, so a
//     failed open leaves no half-made object behind.
//   - MAP_NORESERVE: a sparse 1 TiB region must not be refused by overcommit accounting.
#include "region.hpp"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>

#include "errors.hpp"

namespace bm {

namespace {

// The user-space address space of x86-64 is 128 TiB; a region must leave room for everything
// else in the process.
constexpr uint64_t kMaxRegionBytes = uint64_t{64} << 40;
constexpr size_t kMaxSharedNameBytes = 200;

std::string systemMessage(const std::string& what, int errnoValue) {
  return what + ": " + std::strerror(errnoValue);
}

void validateSharedName(const std::string& name) {
  if (name.empty() || name.size() > kMaxSharedNameBytes) {
    throw ArgumentError("shared region name must be 1.." + std::to_string(kMaxSharedNameBytes) +
                        " bytes, got " + std::to_string(name.size()));
  }
  bool allDots = true;
  for (const char c : name) {
    const bool allowed = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
    if (!allowed) {
      throw ArgumentError("shared region name \"" + name +
                          "\" may only contain [A-Za-z0-9._-] (no leading '/')");
    }
    allDots = allDots && c == '.';
  }
  // "." and ".." would name /dev/shm itself or its parent.
  if (allDots) throw ArgumentError("shared region name \"" + name + "\" is not a valid name");
}

uint64_t roundUpToPage(uint64_t byteLength) noexcept {
  const uint64_t page = Region::pageSize();
  return (byteLength + page - 1) / page * page;
}

std::string describe(RegionKind kind, const std::string& name) {
  switch (kind) {
    case RegionKind::Anonymous:
      return "anonymous region";
    case RegionKind::Shared:
      return "shared region \"" + name + "\"";
    case RegionKind::File:
      return "file region \"" + name + "\"";
  }
  return "region";
}

// Opens the backing fd. Returns the fd and sets `created`.
int openBacking(const RegionOptions& options, bool& created) {
  const std::string what = describe(options.kind, options.name);
  if (options.kind == RegionKind::Anonymous) {
    const int fd = memfd_create(options.name.empty() ? "blockmirror" : options.name.c_str(),
                                MFD_CLOEXEC);
    if (fd < 0) throw Error(Code::ERR_REGION_OPEN, systemMessage("memfd_create", errno), errno);
    created = true;
    return fd;
  }

  const std::string path =
      options.kind == RegionKind::Shared ? "/" + options.name : options.name;
  auto openWith = [&](int flags) -> int {
    if (options.kind == RegionKind::Shared) return shm_open(path.c_str(), flags, 0600);
    return ::open(path.c_str(), flags | O_CLOEXEC, 0644);
  };

  if (options.create) {
    const int fd = openWith(O_RDWR | O_CREAT | O_EXCL);
    if (fd >= 0) {
      created = true;
      return fd;
    }
    if (errno != EEXIST) {
      throw Error(Code::ERR_REGION_OPEN, systemMessage("cannot create " + what, errno), errno);
    }
    if (!options.open) throw Error(Code::ERR_REGION_EXISTS, what + " already exists", EEXIST);
  }
  const int fd = openWith(O_RDWR);
  if (fd >= 0) {
    created = false;
    return fd;
  }
  if (errno == ENOENT) throw Error(Code::ERR_REGION_NOT_FOUND, what + " does not exist", ENOENT);
  throw Error(Code::ERR_REGION_OPEN, systemMessage("cannot open " + what, errno), errno);
}

}  // namespace

uint64_t Region::pageSize() noexcept {
  static const uint64_t size = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  return size;
}

std::shared_ptr<Region> Region::open(const RegionOptions& options) {
  if (options.kind != RegionKind::Anonymous && options.kind != RegionKind::Shared &&
      options.kind != RegionKind::File) {
    throw ArgumentError("unknown region kind " + std::to_string(static_cast<int>(options.kind)));
  }
  if (!options.create && !options.open) {
    throw ArgumentError("region options: at least one of create and open must be true");
  }
  if (options.kind == RegionKind::Shared) validateSharedName(options.name);
  if (options.kind == RegionKind::File && options.name.empty()) {
    throw ArgumentError("file region needs a path in options.name");
  }
  if (options.byteLength > kMaxRegionBytes) {
    throw RangeError("region byteLength " + std::to_string(options.byteLength) +
                     " exceeds the limit of " + std::to_string(kMaxRegionBytes) + " bytes");
  }
  // A length is needed whenever this call may create the backing.
  const bool mayCreate = options.create || options.kind == RegionKind::Anonymous;
  if (mayCreate && options.byteLength == 0 && !options.open) {
    throw RangeError("region byteLength must be > 0");
  }

  bool created = false;
  const int fd = openBacking(options, created);
  const std::string what = describe(options.kind, options.name);

  // From here on, failures close the fd and remove a backing we created.
  auto fail = [&](Code code, const std::string& message, int errnoValue) {
    ::close(fd);
    if (created && options.kind != RegionKind::Anonymous) unlink(options.kind, options.name);
    throw Error(code, message, errnoValue);
  };

  uint64_t byteLength = 0;
  if (created) {
    if (options.byteLength == 0) {
      ::close(fd);
      if (options.kind != RegionKind::Anonymous) unlink(options.kind, options.name);
      throw RangeError("region byteLength must be > 0 to create " + what);
    }
    byteLength = roundUpToPage(options.byteLength);
    if (ftruncate(fd, static_cast<off_t>(byteLength)) != 0) {
      const int e = errno;
      fail(Code::ERR_REGION_OPEN, systemMessage("cannot size " + what, e), e);
    }
  } else {
    struct stat status {};
    if (fstat(fd, &status) != 0) {
      const int e = errno;
      fail(Code::ERR_REGION_OPEN, systemMessage("cannot stat " + what, e), e);
    }
    byteLength = static_cast<uint64_t>(status.st_size);
    if (byteLength == 0 || byteLength < options.byteLength) {
      fail(Code::ERR_REGION_TOO_SMALL,
           what + " holds " + std::to_string(byteLength) + " bytes, " +
               std::to_string(options.byteLength == 0 ? 1 : options.byteLength) +
               " or more were asked for",
           0);
    }
    if (byteLength > kMaxRegionBytes) {
      fail(Code::ERR_REGION_OPEN,
           what + " is " + std::to_string(byteLength) + " bytes, over the limit of " +
               std::to_string(kMaxRegionBytes),
           0);
    }
  }

  const uint64_t mappedBytes = roundUpToPage(byteLength);
  void* base = mmap(nullptr, mappedBytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0);
  if (base == MAP_FAILED) {
    const int e = errno;
    fail(Code::ERR_REGION_MAP, systemMessage("cannot map " + what + " (" +
                                                 std::to_string(mappedBytes) + " bytes)", e),
         e);
  }

  std::shared_ptr<Region> region(new Region());
  region->kind_ = options.kind;
  region->name_ = options.name;
  region->fd_ = fd;
  region->base_ = static_cast<uint8_t*>(base);
  region->byteLength_ = byteLength;
  region->mappedBytes_ = mappedBytes;
  region->created_ = created;
  return region;
}

bool Region::unlink(RegionKind kind, const std::string& name) {
  int result = 0;
  if (kind == RegionKind::Shared) {
    validateSharedName(name);
    result = shm_unlink(("/" + name).c_str());
  } else if (kind == RegionKind::File) {
    if (name.empty()) throw ArgumentError("file region needs a path to unlink");
    result = ::unlink(name.c_str());
  } else {
    throw ArgumentError("an anonymous region has no name to unlink");
  }
  if (result == 0) return true;
  if (errno == ENOENT) return false;
  throw Error(Code::ERR_REGION_OPEN, systemMessage("cannot unlink " + describe(kind, name), errno),
              errno);
}

Region::~Region() { close(); }

void Region::checkOpen() const {
  if (base_ == nullptr) throw Error(Code::ERR_REGION_CLOSED, describe(kind_, name_) + " is closed");
}

void Region::checkRange(const char* operation, uint64_t byteOffset, uint64_t byteLength) const {
  checkOpen();
  if (byteLength > byteLength_ || byteOffset > byteLength_ - byteLength) {
    throw RangeError(std::string(operation) + " [" + std::to_string(byteOffset) + ", +" +
                     std::to_string(byteLength) + ") is outside the region (" +
                     std::to_string(byteLength_) + " bytes)");
  }
}

uint8_t* Region::data() const {
  checkOpen();
  return base_;
}

void Region::read(uint64_t byteOffset, void* target, uint64_t byteLength) const {
  checkRange("read", byteOffset, byteLength);
  // pread, not memcpy from the mapping: a read fault on a hole of a shared shmem mapping
  // allocates a page, so reading a sparse 1 TiB region through the mapping would fill it.
  // pread copies from the zero page for holes and allocates nothing.
  auto* bytes = static_cast<uint8_t*>(target);
  uint64_t done = 0;
  while (done < byteLength) {
    const size_t chunk = static_cast<size_t>(std::min<uint64_t>(byteLength - done, 1u << 30));
    const ssize_t got = pread(fd_, bytes + done, chunk, static_cast<off_t>(byteOffset + done));
    if (got > 0) {
      done += static_cast<uint64_t>(got);
    } else if (got < 0 && errno == EINTR) {
      continue;
    } else {
      // Past the end of a file that shrank under us, or an unexpected error: the mapping still
      // gives the answer (or the SIGBUS a mapped file beyond its end deserves).
      std::memcpy(bytes + done, base_ + byteOffset + done, byteLength - done);
      done = byteLength;
    }
  }
}

void Region::write(uint64_t byteOffset, const void* source, uint64_t byteLength) {
  checkRange("write", byteOffset, byteLength);
  if (byteLength > 0) std::memmove(base_ + byteOffset, source, byteLength);
}

void Region::copyFrom(uint64_t byteOffset, const Region& source, uint64_t sourceByteOffset,
                      uint64_t byteLength) {
  checkRange("copyFrom", byteOffset, byteLength);
  source.checkRange("copyFrom", sourceByteOffset, byteLength);
  uint64_t done = 0;
  while (done < byteLength) {
    off_t from = static_cast<off_t>(sourceByteOffset + done);
    off_t to = static_cast<off_t>(byteOffset + done);
    const ssize_t copied = copy_file_range(source.fd_, &from, fd_, &to,
                                           static_cast<size_t>(byteLength - done), 0);
    if (copied > 0) {
      done += static_cast<uint64_t>(copied);
      continue;
    }
    if (copied < 0 && errno == EINTR) continue;
    // Not supported between these two backings (or nothing copied): the portable way.
    source.read(sourceByteOffset + done, base_ + byteOffset + done, byteLength - done);
    return;
  }
}

void Region::trim(uint64_t byteOffset, uint64_t byteLength) {
  checkRange("trim", byteOffset, byteLength);
  if (byteLength == 0) return;
  const uint64_t page = pageSize();
  const uint64_t endByteOffset = byteOffset + byteLength;
  const uint64_t alignedStart = (byteOffset + page - 1) / page * page;
  const uint64_t alignedEnd = endByteOffset / page * page;
  if (alignedStart >= alignedEnd) {
    std::memset(base_ + byteOffset, 0, byteLength);
    return;
  }
  // Edges first: they are in pages that stay allocated.
  std::memset(base_ + byteOffset, 0, alignedStart - byteOffset);
  std::memset(base_ + alignedEnd, 0, endByteOffset - alignedEnd);
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, static_cast<off_t>(alignedStart),
                static_cast<off_t>(alignedEnd - alignedStart)) != 0) {
    const int e = errno;
    if (e == EOPNOTSUPP || e == ENOSYS) {
      // A file system without hole punching still has to read back zeros.
      std::memset(base_ + alignedStart, 0, alignedEnd - alignedStart);
      return;
    }
    throw Error(Code::ERR_REGION_TRIM,
                systemMessage("trim [" + std::to_string(byteOffset) + ", +" +
                                  std::to_string(byteLength) + ") of " + describe(kind_, name_),
                              e),
                e);
  }
}

std::vector<RegionExtent> Region::allocationMap(uint64_t byteOffset, uint64_t byteLength) const {
  checkRange("allocationMap", byteOffset, byteLength);
  std::vector<RegionExtent> extents;
  auto add = [&extents](uint64_t start, uint64_t end, bool allocated) {
    if (start >= end) return;
    if (!extents.empty() && extents.back().allocated == allocated &&
        extents.back().byteOffset + extents.back().byteLength == start) {
      extents.back().byteLength += end - start;
      return;
    }
    extents.push_back(RegionExtent{start, end - start, allocated});
  };
  const uint64_t endByteOffset = byteOffset + byteLength;
  uint64_t position = byteOffset;
  while (position < endByteOffset) {
    const off_t dataStart = lseek(fd_, static_cast<off_t>(position), SEEK_DATA);
    if (dataStart < 0) {
      const int e = errno;
      if (e == ENXIO) {  // no data at or after position: the rest is a hole
        add(position, endByteOffset, false);
        break;
      }
      if (e == EINVAL || e == EOPNOTSUPP) {  // no SEEK_DATA support: report everything as data
        add(position, endByteOffset, true);
        break;
      }
      throw Error(Code::ERR_REGION_OPEN, systemMessage("lseek(SEEK_DATA)", e), e);
    }
    const uint64_t dataByteOffset = static_cast<uint64_t>(dataStart);
    add(position, std::min(dataByteOffset, endByteOffset), false);
    if (dataByteOffset >= endByteOffset) break;
    const off_t holeStart = lseek(fd_, dataStart, SEEK_HOLE);
    if (holeStart < 0) {
      const int e = errno;
      throw Error(Code::ERR_REGION_OPEN, systemMessage("lseek(SEEK_HOLE)", e), e);
    }
    // SEEK_HOLE always finds one: the end of the backing counts as a hole.
    const uint64_t holeByteOffset = std::max(static_cast<uint64_t>(holeStart), dataByteOffset + 1);
    add(dataByteOffset, std::min(holeByteOffset, endByteOffset), true);
    position = holeByteOffset;
  }
  return extents;
}

bool Region::nextAllocated(uint64_t byteOffset, uint64_t endByteOffset,
                           RegionExtent& extent) const {
  if (endByteOffset < byteOffset) endByteOffset = byteOffset;
  checkRange("nextAllocated", byteOffset, endByteOffset - byteOffset);
  if (byteOffset == endByteOffset) return false;
  const off_t dataStart = lseek(fd_, static_cast<off_t>(byteOffset), SEEK_DATA);
  if (dataStart < 0) {
    const int e = errno;
    if (e == ENXIO) return false;
    if (e == EINVAL || e == EOPNOTSUPP) {  // no SEEK_DATA support: everything may hold data
      extent = RegionExtent{byteOffset, endByteOffset - byteOffset, true};
      return true;
    }
    throw Error(Code::ERR_REGION_OPEN, systemMessage("lseek(SEEK_DATA)", e), e);
  }
  const uint64_t start = static_cast<uint64_t>(dataStart);
  if (start >= endByteOffset) return false;
  const off_t holeStart = lseek(fd_, dataStart, SEEK_HOLE);
  if (holeStart < 0) {
    const int e = errno;
    throw Error(Code::ERR_REGION_OPEN, systemMessage("lseek(SEEK_HOLE)", e), e);
  }
  const uint64_t end = std::min(std::max(static_cast<uint64_t>(holeStart), start + 1), endByteOffset);
  extent = RegionExtent{start, end - start, true};
  return true;
}

bool Region::hasData(uint64_t byteOffset, uint64_t endByteOffset) const {
  if (endByteOffset < byteOffset) endByteOffset = byteOffset;
  checkRange("hasData", byteOffset, endByteOffset - byteOffset);
  if (byteOffset == endByteOffset) return false;
  const off_t dataStart = lseek(fd_, static_cast<off_t>(byteOffset), SEEK_DATA);
  if (dataStart < 0) {
    const int e = errno;
    if (e == ENXIO) return false;
    if (e == EINVAL || e == EOPNOTSUPP) return true;  // no SEEK_DATA support: assume data
    throw Error(Code::ERR_REGION_OPEN, systemMessage("lseek(SEEK_DATA)", e), e);
  }
  return static_cast<uint64_t>(dataStart) < endByteOffset;
}

uint64_t Region::allocatedBytes() const {
  checkOpen();
  struct stat status {};
  if (fstat(fd_, &status) != 0) {
    throw Error(Code::ERR_REGION_OPEN, systemMessage("fstat", errno), errno);
  }
  return static_cast<uint64_t>(status.st_blocks) * 512;
}

void Region::flush(uint64_t byteOffset, uint64_t byteLength) {
  checkRange("flush", byteOffset, byteLength);
  if (kind_ != RegionKind::File) {
    // Memory backings: every store is already in the shared pages; the fence only orders them
    // before whatever the caller does next (for instance acknowledging the flush).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return;
  }
  if (byteLength > 0) {
    const uint64_t page = pageSize();
    const uint64_t alignedStart = byteOffset / page * page;
    const uint64_t alignedEnd = roundUpToPage(byteOffset + byteLength);
    if (msync(base_ + alignedStart, std::min(alignedEnd, mappedBytes_) - alignedStart, MS_SYNC) != 0) {
      const int e = errno;
      throw Error(Code::ERR_REGION_FLUSH, systemMessage("msync of " + describe(kind_, name_), e), e);
    }
  }
  if (fsync(fd_) != 0) {
    const int e = errno;
    throw Error(Code::ERR_REGION_FLUSH, systemMessage("fsync of " + describe(kind_, name_), e), e);
  }
}

void Region::flushAll() {
  checkOpen();
  flush(0, byteLength_);
}

void Region::close() noexcept {
  if (base_ != nullptr) {
    munmap(base_, mappedBytes_);
    base_ = nullptr;
  }
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
  }
}

}  // namespace bm
