// Notes on the design
// -------------------
// See volume.hpp for the layout and the write path. Implementation notes:
//
// Superblock bytes (little endian): [0,8) magic "BMVOLUM1", [8,12) version, [12,16) blockSize,
// [16,20) flags (bit 0: strict), [20,24) slot count, [24,32) capacityBytes, [32,40)
// dataByteOffset, [40,48) slotBytes, [48,56) volumeId, [56,60) crc32c of [0,56). Then the shared
// words: [64,68) directoryGeneration, [68,72) directory lock (pid of the holder, 0 when free),
// [72,76) "needs interceptor" (non-zero while a snapshot store exists; changed under the
// directory lock with a generation bump, like a directory entry).
// The directory starts at 128: kBitmapSlotCount entries of 72 bytes: state u32 (0 free,
// 1 in use), recording u32, granularityBytes u64, bitCount u64, name[48] NUL-terminated.
// slotBytes is a whole number of 4 KiB pages, so the data area starts page-aligned and trims
// of page-aligned volume ranges free whole pages.
//
// Directory changes (create, delete, recording on/off) happen under the directory lock, a word
// in the superblock that every process mapping the volume shares; the holder's pid is stored so
// that a lock left behind by a killed process is taken over. Each change bumps
// directoryGeneration after the entry is written. The write path compares the generation once
// per batch and rebuilds its cached views only when it moved, so steady-state writes neither
// lock nor allocate. A batch that raced with a directory change may mark a bitmap deleted a
// moment ago, or the slot's next tenant: a dirty bitmap with an extra bit is conservative, never
// wrong (a missing bit would be).
//
// Threads: one Volume object is driven by one thread at a time (the binding serializes calls);
// stats() may be read from any thread, and flush() may run on a worker while no write batch is
// in flight on the same object. Several Volume objects, in one process or many, may share a
// region: that is what the shared directory and the atomic bitmap words are for.
#include "volume.hpp"

#include <signal.h>
#include <sched.h>
#include <sys/random.h>
#include <unistd.h>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include <atomic>
#include <bit>
#include <chrono>
#include <cstring>
#include <random>
#include <thread>

#include "byte_order.hpp"
#include "crc32c.hpp"
#include "errors.hpp"

namespace bm {

namespace {

// Writes of at least this many bytes are copied with non-temporal stores (x86-64): a large write
// lands on memory that is not in cache, and ordinary stores would first read every destination
// line (read for ownership) only to overwrite it, doubling the memory traffic. The batch's full
// fence (writeBatch) orders these stores before the bitmap marks, as it does ordinary ones.
constexpr uint64_t kStreamingCopyMinBytes = 256 * 1024;

void copyIntoStore(uint8_t* target, const uint8_t* source, uint64_t byteLength) noexcept {
#if defined(__x86_64__)
  if (byteLength >= kStreamingCopyMinBytes) {
    const uint64_t head = (16 - (reinterpret_cast<uintptr_t>(target) & 15)) & 15;
    std::memcpy(target, source, head);
    target += head;
    source += head;
    byteLength -= head;
    const uint64_t blockCount = byteLength / 64;
    for (uint64_t i = 0; i < blockCount; i++) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + 16));
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + 32));
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + 48));
      _mm_stream_si128(reinterpret_cast<__m128i*>(target), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(target + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(target + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(target + 48), d);
      source += 64;
      target += 64;
    }
    std::memcpy(target, source, byteLength - blockCount * 64);
    // Non-temporal stores are weakly ordered; the fence makes them ordinary again for anyone
    // who reads the volume next (the batch fence follows too, but this keeps the helper whole).
    _mm_sfence();
    return;
  }
#endif
  std::memcpy(target, source, byteLength);
}

constexpr uint64_t kVolumeMagic = 0x314D554C4F564D42ull;  // "BMVOLUM1" little endian
constexpr uint32_t kVolumeVersion = 1;
constexpr uint32_t kFlagStrict = 1;
constexpr uint64_t kStaticCrcByteOffset = 56;
constexpr uint64_t kGenerationByteOffset = 64;
constexpr uint64_t kLockByteOffset = 68;
constexpr uint64_t kInterceptorRequiredByteOffset = 72;
constexpr uint64_t kDirectoryByteOffset = 128;
constexpr uint64_t kEntryBytes = 72;
constexpr uint64_t kEntryNameBytes = 48;
constexpr uint32_t kEntryFree = 0;
constexpr uint32_t kEntryInUse = 1;
constexpr uint64_t kSlotAlignmentBytes = 4096;
// 2^45 bytes (32 TiB), the same limit as Volume.MAX_CAPACITY_BYTES in TypeScript; with the
// bitmap slots the region stays far below the address space and every offset sum far from
// overflow.
constexpr uint64_t kMaxCapacityBytes = uint64_t{1} << 45;
// A directory lock held longer than this by a live process is a broken invariant.
constexpr auto kLockTimeout = std::chrono::seconds(30);

static_assert(kDirectoryByteOffset + Volume::kBitmapSlotCount * kEntryBytes <= Volume::kSuperblockBytes);
static_assert(Volume::kMaxBitmapNameBytes < kEntryNameBytes);

std::atomic_ref<uint32_t> sharedWord(uint8_t* superblock, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(superblock + byteOffset));
}

uint64_t slotBytesFor(uint64_t capacityBytes) noexcept {
  const uint64_t bitmapBytes = Bitmap::storageBytes(
      Bitmap::bitCountFor(capacityBytes, Volume::kMinVolumeGranularityBytes));
  return (bitmapBytes + kSlotAlignmentBytes - 1) / kSlotAlignmentBytes * kSlotAlignmentBytes;
}

uint64_t randomVolumeId() {
  uint64_t id = 0;
  while (id == 0) {
    if (getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) {
      std::random_device device;
      id = (uint64_t{device()} << 32) ^ device();
    }
  }
  return id;
}

void validateBitmapName(const std::string& name) {
  if (name.empty() || name.size() > Volume::kMaxBitmapNameBytes) {
    throw ArgumentError("bitmap name must be 1.." + std::to_string(Volume::kMaxBitmapNameBytes) +
                        " bytes, got " + std::to_string(name.size()));
  }
  for (const char c : name) {
    const bool allowed = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
    if (!allowed) {
      throw ArgumentError("bitmap name \"" + name + "\" may only contain [A-Za-z0-9._:-]");
    }
  }
}

std::string rangeText(uint64_t byteOffset, uint64_t byteLength) {
  return "[" + std::to_string(byteOffset) + ", +" + std::to_string(byteLength) + ")";
}

const char* operationName(RecordKind kind) noexcept {
  switch (kind) {
    case RecordKind::Write:
      return "write";
    case RecordKind::Zero:
      return "writeZeroes";
    case RecordKind::Trim:
      return "trim";
    default:
      return "request";
  }
}

struct DirectoryEntry {
  uint32_t state;
  bool recording;
  uint64_t granularityBytes;
  uint64_t bitCount;
  char name[kEntryNameBytes];
};

uint8_t* entryAt(uint8_t* superblock, uint32_t slot) noexcept {
  return superblock + kDirectoryByteOffset + slot * kEntryBytes;
}

// Reads and checks one entry. A damaged entry is a damaged superblock: refusing is safer than
// marking a bitmap with made-up geometry.
DirectoryEntry readEntry(uint8_t* superblock, uint32_t slot, uint64_t capacityBytes) {
  const uint8_t* bytes = entryAt(superblock, slot);
  DirectoryEntry entry{};
  entry.state = readLittleEndian<uint32_t>(bytes);
  if (entry.state == kEntryFree) return entry;
  entry.recording = readLittleEndian<uint32_t>(bytes + 4) != 0;
  entry.granularityBytes = readLittleEndian<uint64_t>(bytes + 8);
  entry.bitCount = readLittleEndian<uint64_t>(bytes + 16);
  std::memcpy(entry.name, bytes + 24, kEntryNameBytes);
  const size_t nameBytes = strnlen(entry.name, kEntryNameBytes);
  const bool valid = entry.state == kEntryInUse &&
                     entry.granularityBytes >= Volume::kMinVolumeGranularityBytes &&
                     entry.granularityBytes <= Bitmap::kMaxGranularityBytes &&
                     std::has_single_bit(entry.granularityBytes) &&
                     entry.bitCount == Bitmap::bitCountFor(capacityBytes, entry.granularityBytes) &&
                     nameBytes >= 1 && nameBytes <= Volume::kMaxBitmapNameBytes;
  if (!valid) {
    throw Error(Code::ERR_VOLUME_BAD_SUPERBLOCK,
                "volume superblock: bitmap directory entry " + std::to_string(slot) +
                    " is damaged");
  }
  return entry;
}

// The cross-process directory lock (see the design note).
class DirectoryLock {
 public:
  explicit DirectoryLock(uint8_t* superblock) : word_(sharedWord(superblock, kLockByteOffset)) {
    const uint32_t self = static_cast<uint32_t>(getpid());
    const auto deadline = std::chrono::steady_clock::now() + kLockTimeout;
    uint32_t spins = 0;
    while (true) {
      uint32_t expected = 0;
      if (word_.compare_exchange_strong(expected, self, std::memory_order_acquire)) return;
      // A holder that no longer exists died inside a directory change: take the lock over. The
      // entry it was writing is either complete or still free (state is written last).
      if (expected != self && kill(static_cast<pid_t>(expected), 0) != 0 && errno == ESRCH) {
        if (word_.compare_exchange_strong(expected, self, std::memory_order_acquire)) return;
        continue;
      }
      if (++spins < 64) {
        sched_yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      BM_ASSERT(std::chrono::steady_clock::now() < deadline);
    }
  }
  ~DirectoryLock() { word_.store(0, std::memory_order_release); }
  DirectoryLock(const DirectoryLock&) = delete;
  DirectoryLock& operator=(const DirectoryLock&) = delete;

 private:
  std::atomic_ref<uint32_t> word_;
};

void bumpGeneration(uint8_t* superblock) noexcept {
  uint32_t next = sharedWord(superblock, kGenerationByteOffset).load(std::memory_order_relaxed) + 1;
  // UINT32_MAX is the "never loaded" value of cachedGeneration_.
  if (next == UINT32_MAX) next = 1;
  sharedWord(superblock, kGenerationByteOffset).store(next, std::memory_order_release);
}

}  // namespace

uint64_t Volume::regionBytesFor(uint64_t capacityBytes) noexcept {
  return kSuperblockBytes + kBitmapSlotCount * slotBytesFor(capacityBytes) + capacityBytes;
}

std::unique_ptr<Volume> Volume::create(std::shared_ptr<Region> region,
                                       const VolumeOptions& options) {
  if (!region) throw ArgumentError("volume region must not be null");
  if (options.blockSize < kMinBlockSize || options.blockSize > kMaxBlockSize ||
      !std::has_single_bit(options.blockSize)) {
    throw RangeError("volume blockSize " + std::to_string(options.blockSize) +
                     " must be a power of two from " + std::to_string(kMinBlockSize) + " to " +
                     std::to_string(kMaxBlockSize));
  }
  if (options.capacityBytes == 0 || options.capacityBytes % options.blockSize != 0 ||
      options.capacityBytes > kMaxCapacityBytes) {
    throw RangeError("volume capacityBytes " + std::to_string(options.capacityBytes) +
                     " must be a positive multiple of the block size " +
                     std::to_string(options.blockSize) + " and at most 2^45");
  }
  const uint64_t neededBytes = regionBytesFor(options.capacityBytes);
  if (region->byteLength() < neededBytes) {
    throw Error(Code::ERR_REGION_TOO_SMALL,
                "volume of " + std::to_string(options.capacityBytes) + " bytes needs a " +
                    std::to_string(neededBytes) + "-byte region, got " +
                    std::to_string(region->byteLength()));
  }
  uint8_t* superblock = region->data();
  std::memset(superblock, 0, kSuperblockBytes);
  const uint64_t slotBytes = slotBytesFor(options.capacityBytes);
  writeLittleEndian<uint64_t>(superblock, kVolumeMagic);
  writeLittleEndian<uint32_t>(superblock + 8, kVolumeVersion);
  writeLittleEndian<uint32_t>(superblock + 12, options.blockSize);
  writeLittleEndian<uint32_t>(superblock + 16, options.strict ? kFlagStrict : 0);
  writeLittleEndian<uint32_t>(superblock + 20, kBitmapSlotCount);
  writeLittleEndian<uint64_t>(superblock + 24, options.capacityBytes);
  writeLittleEndian<uint64_t>(superblock + 32, kSuperblockBytes + kBitmapSlotCount * slotBytes);
  writeLittleEndian<uint64_t>(superblock + 40, slotBytes);
  writeLittleEndian<uint64_t>(superblock + 48, randomVolumeId());
  writeLittleEndian<uint32_t>(superblock + kStaticCrcByteOffset,
                              crc32c(0, superblock, kStaticCrcByteOffset));
  sharedWord(superblock, kGenerationByteOffset).store(1, std::memory_order_release);
  // The data area is not cleared: a new region reads as zero already, and clearing a large
  // file-backed region without hole punching would write every byte of it.
  return open(std::move(region));
}

std::unique_ptr<Volume> Volume::open(std::shared_ptr<Region> region) {
  if (!region) throw ArgumentError("volume region must not be null");
  auto bad = [](const std::string& why) {
    return Error(Code::ERR_VOLUME_BAD_SUPERBLOCK, "volume superblock: " + why);
  };
  if (region->byteLength() < kSuperblockBytes) {
    throw bad("region of " + std::to_string(region->byteLength()) + " bytes is too small");
  }
  uint8_t* superblock = region->data();
  if (readLittleEndian<uint64_t>(superblock) != kVolumeMagic) throw bad("bad magic");
  const uint32_t version = readLittleEndian<uint32_t>(superblock + 8);
  if (version != kVolumeVersion) throw bad("unsupported version " + std::to_string(version));
  if (readLittleEndian<uint32_t>(superblock + kStaticCrcByteOffset) !=
      crc32c(0, superblock, kStaticCrcByteOffset)) {
    throw bad("checksum mismatch");
  }
  const uint32_t blockSize = readLittleEndian<uint32_t>(superblock + 12);
  const uint32_t flags = readLittleEndian<uint32_t>(superblock + 16);
  const uint32_t slotCount = readLittleEndian<uint32_t>(superblock + 20);
  const uint64_t capacityBytes = readLittleEndian<uint64_t>(superblock + 24);
  const uint64_t dataByteOffset = readLittleEndian<uint64_t>(superblock + 32);
  const uint64_t slotBytes = readLittleEndian<uint64_t>(superblock + 40);
  const bool geometryValid =
      blockSize >= kMinBlockSize && blockSize <= kMaxBlockSize && std::has_single_bit(blockSize) &&
      capacityBytes > 0 && capacityBytes <= kMaxCapacityBytes && capacityBytes % blockSize == 0 &&
      slotCount == kBitmapSlotCount && slotBytes == slotBytesFor(capacityBytes) &&
      dataByteOffset == kSuperblockBytes + kBitmapSlotCount * slotBytes && (flags & ~kFlagStrict) == 0;
  if (!geometryValid) throw bad("inconsistent geometry");
  if (region->byteLength() < dataByteOffset + capacityBytes) {
    throw Error(Code::ERR_REGION_TOO_SMALL,
                "volume of " + std::to_string(capacityBytes) + " bytes needs a " +
                    std::to_string(dataByteOffset + capacityBytes) + "-byte region, got " +
                    std::to_string(region->byteLength()));
  }
  std::unique_ptr<Volume> volume(new Volume());
  volume->superblock_ = superblock;
  volume->data_ = superblock + dataByteOffset;
  volume->volumeId_ = readLittleEndian<uint64_t>(superblock + 48);
  volume->capacityBytes_ = capacityBytes;
  volume->dataByteOffset_ = dataByteOffset;
  volume->slotBytes_ = slotBytes;
  volume->blockSize_ = blockSize;
  volume->strict_ = (flags & kFlagStrict) != 0;
  volume->region_ = std::move(region);
  // Loads the directory now, so a damaged one fails the open rather than the first write.
  volume->refreshDirectoryIfChanged();
  return volume;
}

Volume::~Volume() { close(); }

void Volume::close() noexcept {
  for (auto& bitmap : recording_) bitmap.reset();
  recordingCount_ = 0;
  journal_.reset();
  region_.reset();
  superblock_ = nullptr;
  data_ = nullptr;
}

void Volume::checkOpen() const {
  if (region_ == nullptr) throw Error(Code::ERR_VOLUME_CLOSED, "volume is closed");
}

const std::shared_ptr<Region>& Volume::region() const {
  checkOpen();
  return region_;
}

uint8_t* Volume::data() const {
  checkOpen();
  return data_;
}

void Volume::checkRequest(const char* operation, uint64_t byteOffset, uint64_t byteLength) const {
  if (byteLength > capacityBytes_ || byteOffset > capacityBytes_ - byteLength) {
    throw RangeError(std::string(operation) + " " + rangeText(byteOffset, byteLength) +
                     " is outside the volume (capacity " + std::to_string(capacityBytes_) +
                     " bytes)");
  }
  if (strict_ && (byteOffset % blockSize_ != 0 || byteLength % blockSize_ != 0)) {
    throw RangeError(std::string(operation) + " " + rangeText(byteOffset, byteLength) +
                     " is not aligned to the block size " + std::to_string(blockSize_) +
                     " of this strict volume");
  }
}

void Volume::checkRange(uint64_t byteOffset, uint64_t byteLength) const {
  checkOpen();
  checkRequest("request", byteOffset, byteLength);
}

void Volume::read(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) {
  checkOpen();
  checkRequest("read", byteOffset, byteLength);
  if (byteLength > 0) {
    if (target == nullptr) throw ArgumentError("read target must not be null");
    if (backing_ != nullptr) {
      backing_->load(byteOffset, target, byteLength);
    } else {
      // Through the region's pread: reading holes must not allocate them (region.hpp).
      region_->read(dataByteOffset_ + byteOffset, target, byteLength);
    }
  }
  counters_.readCount.fetch_add(1, std::memory_order_relaxed);
  counters_.readBytes.fetch_add(byteLength, std::memory_order_relaxed);
}

uint64_t Volume::write(uint64_t byteOffset, const uint8_t* source, uint64_t byteLength) {
  const WriteRequest request{byteOffset, byteLength, source, RecordKind::Write};
  uint64_t sequence = 0;
  writeBatch(&request, 1, &sequence);
  return sequence;
}

uint64_t Volume::writeZeroes(uint64_t byteOffset, uint64_t byteLength, bool mayPunchHole) {
  const WriteRequest request{byteOffset, byteLength, nullptr, RecordKind::Zero, mayPunchHole};
  uint64_t sequence = 0;
  writeBatch(&request, 1, &sequence);
  return sequence;
}

uint64_t Volume::trim(uint64_t byteOffset, uint64_t byteLength) {
  const WriteRequest request{byteOffset, byteLength, nullptr, RecordKind::Trim};
  uint64_t sequence = 0;
  writeBatch(&request, 1, &sequence);
  return sequence;
}

size_t Volume::writeBatch(const WriteRequest* requests, size_t count, uint64_t* sequencesOut) {
  checkOpen();
  if (count == 0) return 0;
  if (requests == nullptr) throw ArgumentError("writeBatch: requests must not be null");
  // Step 1 for the whole batch: nothing changes unless every request is valid.
  for (size_t i = 0; i < count; i++) {
    const WriteRequest& request = requests[i];
    const char* operation = operationName(request.kind);
    if (request.kind != RecordKind::Write && request.kind != RecordKind::Zero &&
        request.kind != RecordKind::Trim) {
      throw ArgumentError("writeBatch: request " + std::to_string(i) + " has kind " +
                          std::to_string(static_cast<unsigned>(request.kind)) +
                          "; only Write, Zero and Trim are requests");
    }
    if (request.kind == RecordKind::Write && request.byteLength > 0 && request.data == nullptr) {
      throw ArgumentError("writeBatch: request " + std::to_string(i) + " (write " +
                          rangeText(request.byteOffset, request.byteLength) + ") has no data");
    }
    try {
      checkRequest(operation, request.byteOffset, request.byteLength);
    } catch (const RangeError& error) {
      if (count == 1) throw;
      throw RangeError("writeBatch: request " + std::to_string(i) + " of " +
                       std::to_string(count) + ": " + error.what());
    }
  }
  refreshDirectoryIfChanged();
  if (interceptorRequired_ && interceptor_ == nullptr) {
    throw Error(Code::ERR_SNAPSHOT_DETACHED,
                "the volume has snapshots and this volume object has no snapshot store "
                "attached: open the store before writing");
  }

  // Steps 2-4 for every request, then one full fence, then steps 5-6 for every request. The
  // order inside each write is kept (its data is stored before its bits are set and before its
  // record is appended), but the batch pays for one store-buffer drain instead of one per write:
  // the fence is what lets step 5 skip words already set (Bitmap::markBytesAfterFence), so the
  // steady state of a workload that rewrites dirty tracks issues no locked instruction at all.
  BatchTally tally;
  Journal* const journal = journal_.get();
  if (journal != nullptr) listIntents(*journal, requests, count);
  for (size_t i = 0; i < count; i++) storeOne(requests[i], tally);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  size_t fullCount = 0;
  for (size_t i = 0; i < count; i++) {
    const uint64_t sequence = recordOne(requests[i], tally);
    if (sequence == kJournalFull) fullCount++;
    if (sequencesOut != nullptr) sequencesOut[i] = sequence;
  }
  // Every record is appended (or the journal was full: the pairs fall back to their bitmaps).
  if (journal != nullptr) journal->publishIntents(0);
  // One writer thread per Volume object (the design note): the write-path counters are plain
  // relaxed load+store, readable from any thread, with no locked instruction per write.
  auto add = [](std::atomic<uint64_t>& counter, uint64_t value) {
    if (value != 0) counter.store(counter.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
  };
  add(counters_.batchCount, 1);
  add(counters_.writeCount, tally.writeCount);
  add(counters_.writeBytes, tally.writeBytes);
  add(counters_.zeroCount, tally.zeroCount);
  add(counters_.zeroBytes, tally.zeroBytes);
  add(counters_.trimCount, tally.trimCount);
  add(counters_.trimBytes, tally.trimBytes);
  add(counters_.bitmapMarkCount, tally.bitmapMarkCount);
  add(counters_.journalAppendCount, tally.journalAppendCount);
  add(counters_.journalFullCount, tally.journalFullCount);
  if (backing_ != nullptr) backing_->finishBatch();
  return fullCount;
}

uint8_t* Volume::beginDirectWrite(uint64_t byteOffset, uint64_t byteLength) {
  checkOpen();
  checkRequest("write", byteOffset, byteLength);
  if (byteLength == 0) return nullptr;
  refreshDirectoryIfChanged();
  if (interceptorRequired_ && interceptor_ == nullptr) {
    throw Error(Code::ERR_SNAPSHOT_DETACHED,
                "the volume has snapshots and this volume object has no snapshot store "
                "attached: open the store before writing");
  }
  if (backing_ != nullptr) return nullptr;
  if (interceptor_ != nullptr && interceptor_->mayRoute()) return nullptr;
  // A journaled volume lists the write as an intent until its record is appended at commit
  // (journal.hpp): bytes that land and are never recorded are journaled again after a crash.
  // Every direct slot taken: the caller takes write().
  if (journal_ != nullptr && !journal_->claimDirectIntent(JournalIntent{volumeId_, byteOffset, byteLength, RecordKind::Write})) {
    return nullptr;
  }
  if (interceptor_ != nullptr) {
    // Step 2 before any byte lands: the old bytes go to every snapshot that still needs them.
    try {
      interceptor_->preserve(*this, byteOffset, byteLength);
    } catch (...) {
      if (journal_ != nullptr) journal_->releaseDirectIntent(volumeId_, byteOffset, byteLength);
      throw;
    }
  }
  // Bits before bytes: a caller killed while the bytes land leaves them dirty (conservative).
  for (uint32_t i = 0; i < recordingCount_; i++) recording_[i]->markBytes(byteOffset, byteLength);
  return data_ + byteOffset;
}

uint64_t Volume::commitDirectWrite(uint64_t byteOffset, uint64_t byteLength) {
  checkOpen();
  checkRequest("write", byteOffset, byteLength);
  refreshDirectoryIfChanged();
  if (interceptor_ != nullptr) {
    // A snapshot created while the bytes landed: it takes the range as it is now (the write was
    // in flight when it was created). Already-preserved chunks cost one compare.
    interceptor_->preserve(*this, byteOffset, byteLength);
  }
  BatchTally tally;
  tally.writeCount = 1;
  tally.writeBytes = byteLength;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const WriteRequest request{byteOffset, byteLength, data_ + byteOffset, RecordKind::Write};
  const uint64_t sequence = recordOne(request, tally);
  if (journal_ != nullptr) journal_->releaseDirectIntent(volumeId_, byteOffset, byteLength);
  auto add = [](std::atomic<uint64_t>& counter, uint64_t value) {
    if (value != 0) counter.store(counter.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
  };
  add(counters_.batchCount, 1);
  add(counters_.writeCount, tally.writeCount);
  add(counters_.writeBytes, tally.writeBytes);
  add(counters_.bitmapMarkCount, tally.bitmapMarkCount);
  add(counters_.journalAppendCount, tally.journalAppendCount);
  add(counters_.journalFullCount, tally.journalFullCount);
  return sequence;
}

void Volume::listIntents(Journal& journal, const WriteRequest* requests, size_t count) noexcept {
  // Before the first byte is stored: the ranges a crash could leave in the store without a
  // record (journal.hpp, intents). A batch longer than the area lists its tail as one range.
  const uint32_t listed = static_cast<uint32_t>(std::min<size_t>(count, Journal::kMaxIntents));
  const bool covered = count > Journal::kMaxIntents;
  for (uint32_t i = 0; i < listed - (covered ? 1 : 0); i++) {
    journal.setIntent(i, JournalIntent{volumeId_, requests[i].byteOffset, requests[i].byteLength, requests[i].kind});
  }
  if (covered) {
    uint64_t first = UINT64_MAX;
    uint64_t end = 0;
    for (size_t i = listed - 1; i < count; i++) {
      first = std::min(first, requests[i].byteOffset);
      end = std::max(end, requests[i].byteOffset + requests[i].byteLength);
    }
    journal.setIntent(listed - 1, JournalIntent{volumeId_, first, end - first, RecordKind::Write});
  }
  journal.publishIntents(listed);
}

void Volume::storeOne(const WriteRequest& request, BatchTally& tally) {
  const uint64_t byteOffset = request.byteOffset;
  const uint64_t byteLength = request.byteLength;
  const uint8_t* source = request.kind == RecordKind::Write ? request.data : nullptr;

  // Steps 2 and 3: the copy-on-write and diversion seams.
  bool routed = false;
  if (interceptor_ != nullptr) {
    interceptor_->preserve(*this, byteOffset, byteLength);
    routed = interceptor_->route(*this, byteOffset, byteLength, source, request.kind);
  }

  // Step 4: the store.
  if (!routed && byteLength > 0) {
    switch (request.kind) {
      case RecordKind::Write:
        copyIntoStore(data_ + byteOffset, source, byteLength);
        break;
      case RecordKind::Zero:
        if (request.mayPunchHole) {
          region_->trim(dataByteOffset_ + byteOffset, byteLength);
        } else {
          std::memset(data_ + byteOffset, 0, byteLength);
        }
        break;
      default:
        region_->trim(dataByteOffset_ + byteOffset, byteLength);
        break;
    }
    if (backing_ != nullptr) backing_->store(byteOffset, source, byteLength);
  }
  switch (request.kind) {
    case RecordKind::Write:
      tally.writeCount++;
      tally.writeBytes += byteLength;
      break;
    case RecordKind::Zero:
      tally.zeroCount++;
      tally.zeroBytes += byteLength;
      break;
    default:
      tally.trimCount++;
      tally.trimBytes += byteLength;
      break;
  }
}

uint64_t Volume::recordOne(const WriteRequest& request, BatchTally& tally) {
  const uint64_t byteOffset = request.byteOffset;
  const uint64_t byteLength = request.byteLength;

  // Step 5: every recording bitmap, routed or not: a diverted write still changed the volume.
  for (uint32_t i = 0; i < recordingCount_; i++) {
    recording_[i]->markBytesAfterFence(byteOffset, byteLength);
  }
  if (byteLength > 0) tally.bitmapMarkCount += recordingCount_;

  // Step 6: the journal. A record the journal cannot hold (larger than its records may be, or a
  // zero/trim longer than the record's 32-bit length) is reported like a full journal: the pair
  // falls back to its bitmap, which step 5 has already marked.
  if (!journal_) return 0;
  const bool withPayload = request.kind == RecordKind::Write;
  const bool representable = withPayload ? byteLength <= journal_->maxRecordBytes()
                                         : byteLength <= UINT32_MAX;
  uint64_t sequence = 0;
  if (representable) {
    sequence = journal_->append(request.kind, volumeId_, byteOffset,
                                static_cast<uint32_t>(byteLength),
                                withPayload ? request.data : nullptr,
                                withPayload ? static_cast<uint32_t>(byteLength) : 0);
  }
  if (sequence == 0) {
    // A record the journal can never hold counts as full there too: its readers (the pairs)
    // see the stream broken, as for a ring without room.
    if (!representable) journal_->countUnrepresentable();
    tally.journalFullCount++;
    return kJournalFull;
  }
  tally.journalAppendCount++;
  return sequence;
}

void Volume::flush() {
  checkOpen();
  // The metadata goes with the data: a file-backed volume reopened after a crash needs the
  // bitmaps that describe the data it finds.
  region_->flush(0, dataByteOffset_ + capacityBytes_);
  counters_.flushCount.fetch_add(1, std::memory_order_relaxed);
}

std::vector<RegionExtent> Volume::allocationMap(uint64_t byteOffset, uint64_t byteLength) const {
  checkOpen();
  if (byteLength > capacityBytes_ || byteOffset > capacityBytes_ - byteLength) {
    throw RangeError("allocationMap " + rangeText(byteOffset, byteLength) +
                     " is outside the volume (capacity " + std::to_string(capacityBytes_) +
                     " bytes)");
  }
  std::vector<RegionExtent> extents =
      region_->allocationMap(dataByteOffset_ + byteOffset, byteLength);
  for (RegionExtent& extent : extents) extent.byteOffset -= dataByteOffset_;
  return extents;
}

void Volume::refreshDirectoryIfChanged() {
  const uint32_t generation =
      sharedWord(superblock_, kGenerationByteOffset).load(std::memory_order_acquire);
  if (generation == cachedGeneration_) return;
  DirectoryLock lock(superblock_);
  loadDirectoryLocked();
}

void Volume::loadDirectoryLocked() {
  std::shared_ptr<Bitmap> loaded[kBitmapSlotCount];
  uint32_t loadedCount = 0;
  for (uint32_t slot = 0; slot < kBitmapSlotCount; slot++) {
    const DirectoryEntry entry = readEntry(superblock_, slot, capacityBytes_);
    if (entry.state != kEntryInUse || !entry.recording) continue;
    loaded[loadedCount++] = std::make_shared<Bitmap>(
        region_, kSuperblockBytes + slot * slotBytes_, entry.bitCount, entry.granularityBytes);
  }
  // Swapped in only after every entry was read, so a damaged entry leaves the old cache intact.
  for (uint32_t i = 0; i < kBitmapSlotCount; i++) recording_[i] = std::move(loaded[i]);
  recordingCount_ = loadedCount;
  interceptorRequired_ =
      sharedWord(superblock_, kInterceptorRequiredByteOffset).load(std::memory_order_acquire) != 0;
  cachedGeneration_ = sharedWord(superblock_, kGenerationByteOffset).load(std::memory_order_acquire);
}

std::shared_ptr<Bitmap> Volume::createBitmap(const std::string& name, uint64_t granularityBytes,
                                             bool recording) {
  checkOpen();
  validateBitmapName(name);
  if (granularityBytes < kMinVolumeGranularityBytes ||
      granularityBytes > Bitmap::kMaxGranularityBytes || !std::has_single_bit(granularityBytes)) {
    throw RangeError("bitmap granularity " + std::to_string(granularityBytes) +
                     " bytes must be a power of two from " +
                     std::to_string(kMinVolumeGranularityBytes) + " to 2^30");
  }
  const uint64_t bitCount = Bitmap::bitCountFor(capacityBytes_, granularityBytes);
  DirectoryLock lock(superblock_);
  uint32_t freeSlot = kBitmapSlotCount;
  for (uint32_t slot = 0; slot < kBitmapSlotCount; slot++) {
    const DirectoryEntry entry = readEntry(superblock_, slot, capacityBytes_);
    if (entry.state == kEntryFree) {
      if (freeSlot == kBitmapSlotCount) freeSlot = slot;
    } else if (name == entry.name) {
      throw Error(Code::ERR_BITMAP_EXISTS, "bitmap \"" + name + "\" already exists");
    }
  }
  if (freeSlot == kBitmapSlotCount) {
    throw Error(Code::ERR_BITMAP_LIMIT, "cannot create bitmap \"" + name + "\": all " +
                                            std::to_string(kBitmapSlotCount) +
                                            " bitmap slots of the volume are in use");
  }
  const uint64_t slotByteOffset = kSuperblockBytes + freeSlot * slotBytes_;
  // A bitmap starts clear; punching the slot also returns what an earlier tenant used.
  region_->trim(slotByteOffset, slotBytes_);
  uint8_t* bytes = entryAt(superblock_, freeSlot);
  std::memset(bytes + 4, 0, kEntryBytes - 4);
  writeLittleEndian<uint32_t>(bytes + 4, recording ? 1 : 0);
  writeLittleEndian<uint64_t>(bytes + 8, granularityBytes);
  writeLittleEndian<uint64_t>(bytes + 16, bitCount);
  std::memcpy(bytes + 24, name.data(), name.size());
  // State last: a holder killed before this line leaves the slot free.
  std::atomic_thread_fence(std::memory_order_release);
  writeLittleEndian<uint32_t>(bytes, kEntryInUse);
  bumpGeneration(superblock_);
  loadDirectoryLocked();
  return std::make_shared<Bitmap>(region_, slotByteOffset, bitCount, granularityBytes);
}

std::shared_ptr<Bitmap> Volume::openBitmap(const std::string& name) {
  checkOpen();
  validateBitmapName(name);
  DirectoryLock lock(superblock_);
  for (uint32_t slot = 0; slot < kBitmapSlotCount; slot++) {
    const DirectoryEntry entry = readEntry(superblock_, slot, capacityBytes_);
    if (entry.state == kEntryInUse && name == entry.name) {
      return std::make_shared<Bitmap>(region_, kSuperblockBytes + slot * slotBytes_,
                                      entry.bitCount, entry.granularityBytes);
    }
  }
  throw Error(Code::ERR_BITMAP_NOT_FOUND, "bitmap \"" + name + "\" does not exist");
}

void Volume::deleteBitmap(const std::string& name) {
  checkOpen();
  validateBitmapName(name);
  DirectoryLock lock(superblock_);
  for (uint32_t slot = 0; slot < kBitmapSlotCount; slot++) {
    const DirectoryEntry entry = readEntry(superblock_, slot, capacityBytes_);
    if (entry.state == kEntryInUse && name == entry.name) {
      writeLittleEndian<uint32_t>(entryAt(superblock_, slot), kEntryFree);
      std::memset(entryAt(superblock_, slot) + 4, 0, kEntryBytes - 4);
      bumpGeneration(superblock_);
      loadDirectoryLocked();
      // The slot's pages go back now; views still held elsewhere read zeros from here on.
      region_->trim(kSuperblockBytes + slot * slotBytes_, slotBytes_);
      return;
    }
  }
  throw Error(Code::ERR_BITMAP_NOT_FOUND, "bitmap \"" + name + "\" does not exist");
}

void Volume::setBitmapRecording(const std::string& name, bool recording) {
  checkOpen();
  validateBitmapName(name);
  DirectoryLock lock(superblock_);
  for (uint32_t slot = 0; slot < kBitmapSlotCount; slot++) {
    const DirectoryEntry entry = readEntry(superblock_, slot, capacityBytes_);
    if (entry.state == kEntryInUse && name == entry.name) {
      if (entry.recording != recording) {
        writeLittleEndian<uint32_t>(entryAt(superblock_, slot) + 4, recording ? 1 : 0);
        bumpGeneration(superblock_);
        loadDirectoryLocked();
      }
      return;
    }
  }
  throw Error(Code::ERR_BITMAP_NOT_FOUND, "bitmap \"" + name + "\" does not exist");
}

std::vector<BitmapSlotInfo> Volume::listBitmaps() const {
  checkOpen();
  std::vector<BitmapSlotInfo> bitmaps;
  DirectoryLock lock(superblock_);
  for (uint32_t slot = 0; slot < kBitmapSlotCount; slot++) {
    const DirectoryEntry entry = readEntry(superblock_, slot, capacityBytes_);
    if (entry.state != kEntryInUse) continue;
    bitmaps.push_back(BitmapSlotInfo{std::string(entry.name), slot, entry.granularityBytes,
                                     entry.bitCount, entry.recording});
  }
  return bitmaps;
}

void Volume::setInterceptorRequired(bool required) {
  checkOpen();
  DirectoryLock lock(superblock_);
  sharedWord(superblock_, kInterceptorRequiredByteOffset)
      .store(required ? 1 : 0, std::memory_order_release);
  bumpGeneration(superblock_);
  loadDirectoryLocked();
}

bool Volume::interceptorRequired() const {
  checkOpen();
  return sharedWord(superblock_, kInterceptorRequiredByteOffset).load(std::memory_order_acquire) != 0;
}

void Volume::attachJournal(std::shared_ptr<Journal> journal) {
  checkOpen();
  if (journal && journal->closed()) throw Error(Code::ERR_JOURNAL_CLOSED, "journal is closed");
  journal_ = std::move(journal);
}

VolumeStats Volume::stats() const noexcept {
  auto load = [](const std::atomic<uint64_t>& counter) {
    return counter.load(std::memory_order_relaxed);
  };
  return VolumeStats{load(counters_.readCount),         load(counters_.readBytes),
                     load(counters_.writeCount),        load(counters_.writeBytes),
                     load(counters_.zeroCount),         load(counters_.zeroBytes),
                     load(counters_.trimCount),         load(counters_.trimBytes),
                     load(counters_.flushCount),        load(counters_.batchCount),
                     load(counters_.journalAppendCount), load(counters_.journalFullCount),
                     load(counters_.bitmapMarkCount)};
}

}  // namespace bm
