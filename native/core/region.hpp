// Notes on the design
// -------------------
// A Region is a span of memory mapped MAP_SHARED from one of three backings:
//   - Anonymous: a memfd (memfd_create). Private to this process (and its workers through the
//     same Region object); gone when the last mapping is unmapped.
//   - Shared: a named POSIX shared-memory object (shm_open("/" + name)). Any process may open it
//     by name; its bytes outlive the process that wrote them (SIGKILL included) until unlink().
//   - File: a regular file. Flush is msync(MS_SYNC) + fsync.
// Regions are sparse: the backing is sized with ftruncate and nothing is allocated until a page is
// written, so a 1 TiB region costs nothing untouched. trim() punches holes (fallocate
// PUNCH_HOLE|KEEP_SIZE) over the page-aligned part and zeroes the unaligned edges, so the memory
// comes back. allocationMap() reports data/hole extents with lseek(SEEK_DATA/SEEK_HOLE).
//
// Ownership: the Region object owns the fd and the mapping and unmaps in close() or its
// destructor; exactly one owner. Other objects (Volume, Bitmap, Journal) hold a
// std::shared_ptr<Region>, so the mapping lives as long as its last user.
// Thread safety: data() may be read and written from any thread; the core makes no ordering
// promise between concurrent writers of the same bytes (a disk makes none either).
// close() is idempotent; any use after close throws Error(ERR_REGION_CLOSED).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace bm {

enum class RegionKind { Anonymous = 0, Shared = 1, File = 2 };

struct RegionExtent {
  uint64_t byteOffset;
  uint64_t byteLength;
  bool allocated;  // true: the backing holds pages here (data); false: a hole (reads as zero)
};

struct RegionOptions {
  RegionKind kind = RegionKind::Anonymous;
  // Shared: the object name without the leading '/', [A-Za-z0-9._-]{1,200}. File: a path.
  std::string name;
  uint64_t byteLength = 0;  // > 0; rounded up to the page size
  bool create = true;       // create the backing (fails with ERR_REGION_EXISTS if it exists)
  bool open = false;        // open an existing backing (fails with ERR_REGION_NOT_FOUND)
  // With create && open: open if present, else create.
};

class Region {
 public:
  // Creates or opens per `options`. Throws Error (ERR_REGION_EXISTS, ERR_REGION_NOT_FOUND,
  // ERR_REGION_OPEN, ERR_REGION_MAP) or RangeError/ArgumentError for bad options.
  static std::shared_ptr<Region> open(const RegionOptions& options);
  // Removes a named shared object or a file; returns false if it did not exist.
  static bool unlink(RegionKind kind, const std::string& name);
  static uint64_t pageSize() noexcept;

  ~Region();
  Region(const Region&) = delete;
  Region& operator=(const Region&) = delete;

  RegionKind kind() const noexcept { return kind_; }
  const std::string& name() const noexcept { return name_; }
  uint64_t byteLength() const noexcept { return byteLength_; }
  bool closed() const noexcept { return base_ == nullptr; }
  // True when this call created the backing (false when it opened an existing one).
  bool created() const noexcept { return created_; }

  // Base of the mapping. Throws ERR_REGION_CLOSED after close().
  uint8_t* data() const;

  // Bounds-checked copies (RangeError when out of range). read() goes through pread, so reading
  // holes allocates nothing (reading them through data() would, for shared memory).
  void read(uint64_t byteOffset, void* target, uint64_t byteLength) const;
  void write(uint64_t byteOffset, const void* source, uint64_t byteLength);
  // Copies [sourceByteOffset, +byteLength) of `source` to byteOffset of this region inside the
  // kernel (copy_file_range; pread into the mapping where that is not supported): holes of the
  // source are read without being allocated, and the target's fresh pages are allocated without
  // a page fault each.
  void copyFrom(uint64_t byteOffset, const Region& source, uint64_t sourceByteOffset,
                uint64_t byteLength);
  // Zero [byteOffset, byteOffset+byteLength) and release whole pages inside it.
  void trim(uint64_t byteOffset, uint64_t byteLength);
  // Data/hole extents covering exactly [byteOffset, byteOffset+byteLength), merged, in order.
  std::vector<RegionExtent> allocationMap(uint64_t byteOffset, uint64_t byteLength) const;
  // The first allocated extent at or after byteOffset, clipped to [byteOffset, endByteOffset);
  // false when the rest of the range is a hole. Lets scanners skip holes without reading them
  // (a read through data() would allocate the pages of a shared-memory hole).
  bool nextAllocated(uint64_t byteOffset, uint64_t endByteOffset, RegionExtent& extent) const;
  // Whether any of [byteOffset, endByteOffset) is allocated: one lseek(SEEK_DATA). Cheaper than
  // nextAllocated, whose SEEK_HOLE walks every allocated page after the extent it finds (the
  // whole rest of a fully written region).
  bool hasData(uint64_t byteOffset, uint64_t endByteOffset) const;
  // Bytes of backing actually allocated (st_blocks * 512).
  uint64_t allocatedBytes() const;
  // File: msync(MS_SYNC) + fsync. Memory: a full fence (orders, stores are already visible).
  void flush(uint64_t byteOffset, uint64_t byteLength);
  void flushAll();

  void close() noexcept;

 private:
  Region() = default;
  void checkOpen() const;
  // RangeError naming `operation` unless [byteOffset, +byteLength) lies inside the region.
  void checkRange(const char* operation, uint64_t byteOffset, uint64_t byteLength) const;
  RegionKind kind_ = RegionKind::Anonymous;
  std::string name_;
  int fd_ = -1;
  uint8_t* base_ = nullptr;
  uint64_t byteLength_ = 0;
  uint64_t mappedBytes_ = 0;  // byteLength_ rounded up to whole pages: what munmap releases
  bool created_ = false;
};

}  // namespace bm
