// Notes on the design
// -------------------
// The bitmap directory of a Volume (volume.hpp; the superblock layout is in volume.cpp): create,
// open, delete and list bitmaps, turn recording on and off, the "needs interceptor" word, and
// the cached views of the recording bitmaps that the write path marks.
//
// Directory changes (create, delete, recording on/off) happen under the directory lock, a word
// in the superblock that every process mapping the volume shares; the holder's pid is stored so
// that a lock left behind by a killed process is taken over. Each change bumps
// directoryGeneration after the entry is written. The write path compares the generation once
// per batch and rebuilds its cached views only when it moved, so steady-state writes neither
// lock nor allocate. A batch that raced with a directory change may mark a bitmap deleted a
// moment ago, or the slot's next tenant: a dirty bitmap with an extra bit is conservative, never
// wrong (a missing bit would be).
#include <signal.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include "byte_order.hpp"
#include "errors.hpp"
#include "volume.hpp"
#include "volume_internal.hpp"

namespace bm {

namespace {

using volume_internal::kGenerationByteOffset;
using volume_internal::sharedWord;

constexpr uint64_t kLockByteOffset = 68;
constexpr uint64_t kInterceptorRequiredByteOffset = 72;
constexpr uint64_t kDirectoryByteOffset = 128;
constexpr uint64_t kEntryBytes = 72;
constexpr uint64_t kEntryNameBytes = 48;
constexpr uint32_t kEntryFree = 0;
constexpr uint32_t kEntryInUse = 1;
// A directory lock held longer than this by a live process is a broken invariant.
constexpr auto kLockTimeout = std::chrono::seconds(30);

static_assert(kDirectoryByteOffset + Volume::kBitmapSlotCount * kEntryBytes <= Volume::kSuperblockBytes);
static_assert(Volume::kMaxBitmapNameBytes < kEntryNameBytes);

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

}  // namespace bm
