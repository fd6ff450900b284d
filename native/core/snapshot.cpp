// Notes on the design
// -------------------
// See snapshot.hpp for the model, the layout and the crash argument. Implementation notes:
//
// Header bytes (little endian): [0,8) magic "BMSNAPS1", [8,12) version, [12,16) kMaxSnapshots,
// [16,24) chunkBytes, [24,32) capacityBytes, [32,40) volumeId, [40,48) storeChunkCount,
// [48,56) reserved, [56,60) crc32c of [0,56). Shared words: [64,68) lock (holder pid),
// [68,72) create epoch, [72,76) valid mask (bit per valid snapshot), [80,88) high-water mark,
// [88,96) free stack top, then counters [96,136): preserveCount, preserveBytes, sharedCount,
// zeroChunkCount, overflowCount. The directory starts at 256: kMaxSnapshots entries of 96
// bytes: state u32, id u64 at 8, createdMs u64 at 16, preservedChunkCount u64 at 24,
// name[48] at 32.
//
// Every shared word is accessed through std::atomic_ref, so processes that map the same store
// see whole values. Counters and allocator words change under the lock only.
#include "snapshot.hpp"

#include <signal.h>
#include <sched.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
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

constexpr char kMagicBytes[8] = {'B', 'M', 'S', 'N', 'A', 'P', 'S', '1'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kHeaderBytes = 4096;
constexpr uint64_t kCrcByteOffset = 56;
constexpr uint64_t kLockByteOffset = 64;
constexpr uint64_t kEpochByteOffset = 68;
constexpr uint64_t kValidMaskByteOffset = 72;
constexpr uint64_t kHighWaterByteOffset = 80;
constexpr uint64_t kFreeTopByteOffset = 88;
constexpr uint64_t kPreserveCountByteOffset = 96;
constexpr uint64_t kPreserveBytesByteOffset = 104;
constexpr uint64_t kSharedCountByteOffset = 112;
constexpr uint64_t kZeroChunkCountByteOffset = 120;
constexpr uint64_t kOverflowCountByteOffset = 128;
constexpr uint64_t kDirectoryByteOffset = 256;
constexpr uint64_t kEntryBytes = 96;
constexpr uint64_t kEntryNameBytes = 48;
constexpr uint64_t kPageBytes = 4096;
// A lock held longer than this by a live process is a broken invariant.
constexpr auto kLockTimeout = std::chrono::seconds(30);
// The create epoch is a u32; the last values are kept back so that it never wraps.
constexpr uint32_t kMaxEpoch = UINT32_MAX - 1;

static_assert(kDirectoryByteOffset + SnapshotStore::kMaxSnapshots * kEntryBytes <= kHeaderBytes);
static_assert(SnapshotStore::kMaxSnapshots <= 32, "the valid mask is one u32");
static_assert(SnapshotStore::kMaxNameBytes < kEntryNameBytes);

uint64_t roundUp(uint64_t value, uint64_t unit) noexcept { return (value + unit - 1) / unit * unit; }

std::atomic_ref<uint32_t> word32(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + byteOffset));
}

std::atomic_ref<uint64_t> word64(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + byteOffset));
}

// Counters and allocator words have one writer at a time (the lock holder).
void addRelaxed(uint8_t* base, uint64_t byteOffset, uint64_t value) noexcept {
  auto word = word64(base, byteOffset);
  word.store(word.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
}

uint8_t* entryAt(uint8_t* header, uint32_t slot) noexcept {
  return header + kDirectoryByteOffset + slot * kEntryBytes;
}

SnapshotState entryState(uint8_t* header, uint32_t slot) noexcept {
  return static_cast<SnapshotState>(word32(entryAt(header, slot), 0).load(std::memory_order_acquire));
}

uint64_t entryId(uint8_t* header, uint32_t slot) noexcept {
  return word64(entryAt(header, slot), 8).load(std::memory_order_acquire);
}

std::string entryName(uint8_t* header, uint32_t slot) {
  const char* name = reinterpret_cast<const char*>(entryAt(header, slot) + 32);
  return std::string(name, strnlen(name, kEntryNameBytes - 1));
}

uint64_t randomId() {
  uint64_t id = 0;
  while (id == 0) {
    if (getrandom(&id, sizeof id, 0) != static_cast<ssize_t>(sizeof id)) {
      std::random_device device;
      id = (uint64_t{device()} << 32) ^ device();
    }
  }
  return id;
}

uint64_t nowMs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::system_clock::now().time_since_epoch())
                                   .count());
}

void validateName(const std::string& name) {
  if (name.empty() || name.size() > SnapshotStore::kMaxNameBytes) {
    throw ArgumentError("snapshot name must be 1.." + std::to_string(SnapshotStore::kMaxNameBytes) +
                        " bytes, got " + std::to_string(name.size()));
  }
  for (const char c : name) {
    const bool allowed = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                         (c >= '0' && c <= '9') || c == '.' || c == '_' || c == ':' || c == '-';
    if (!allowed) {
      throw ArgumentError("snapshot name \"" + name + "\" may only contain [A-Za-z0-9._:-]");
    }
  }
}

std::string rangeText(uint64_t byteOffset, uint64_t byteLength) {
  return "[" + std::to_string(byteOffset) + ", +" + std::to_string(byteLength) + ")";
}

void checkOptions(uint64_t capacityBytes, uint32_t blockSize, const SnapshotStoreOptions& options) {
  if (options.chunkBytes < blockSize || options.chunkBytes > SnapshotStore::kMaxChunkBytes ||
      !std::has_single_bit(options.chunkBytes)) {
    throw RangeError("snapshot chunkBytes " + std::to_string(options.chunkBytes) +
                     " must be a power of two from the block size " + std::to_string(blockSize) +
                     " to " + std::to_string(SnapshotStore::kMaxChunkBytes));
  }
  // Up to 64 times the volume: more can never be needed by kMaxSnapshots snapshots plus churn
  // that a sane caller plans for, and it keeps every index far below kZeroChunk.
  if (options.storeBytes > capacityBytes * 64) {
    throw RangeError("snapshot storeBytes " + std::to_string(options.storeBytes) +
                     " must be at most 64 times the volume's capacity");
  }
}

struct Geometry {
  uint64_t chunkCount, storeChunkCount, mapBytes, maps, epochs, counts, freeStack, store, total;
};

Geometry geometryFor(uint64_t capacityBytes, uint64_t chunkBytes, uint64_t storeChunkCount) {
  Geometry g{};
  g.chunkCount = (capacityBytes + chunkBytes - 1) / chunkBytes;
  g.storeChunkCount = storeChunkCount;
  g.mapBytes = roundUp(g.chunkCount * 4, kPageBytes);
  const uint64_t countBytes = roundUp(storeChunkCount * 4, kPageBytes);
  g.maps = kHeaderBytes;
  g.epochs = g.maps + SnapshotStore::kMaxSnapshots * g.mapBytes;
  g.counts = g.epochs + g.mapBytes;
  g.freeStack = g.counts + countBytes;
  g.store = g.freeStack + countBytes;
  g.total = g.store + storeChunkCount * chunkBytes;
  return g;
}

uint64_t storeChunksFor(uint64_t capacityBytes, const SnapshotStoreOptions& options) {
  const uint64_t storeBytes = options.storeBytes == 0 ? capacityBytes : options.storeBytes;
  return std::max<uint64_t>(1, (storeBytes + options.chunkBytes - 1) / options.chunkBytes);
}

}  // namespace

// The cross-process store lock (see the design note). Taking it over from a dead holder runs
// recovery before the new holder goes on.
class SnapshotStore::Lock {
 public:
  explicit Lock(const SnapshotStore& store)
      : word_(word32(store.header_, kLockByteOffset)) {
    const uint32_t self = static_cast<uint32_t>(getpid());
    const auto deadline = std::chrono::steady_clock::now() + kLockTimeout;
    uint32_t spins = 0;
    while (true) {
      uint32_t expected = 0;
      if (word_.compare_exchange_strong(expected, self, std::memory_order_acquire)) return;
      if (expected != self && kill(static_cast<pid_t>(expected), 0) != 0 && errno == ESRCH) {
        if (word_.compare_exchange_strong(expected, self, std::memory_order_acquire)) {
          // The holder died inside a locked change: rebuild the allocator from the maps.
          try {
            const_cast<SnapshotStore&>(store).recoverLocked();
          } catch (...) {
            word_.store(0, std::memory_order_release);
            throw;
          }
          return;
        }
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
  ~Lock() { word_.store(0, std::memory_order_release); }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  std::atomic_ref<uint32_t> word_;
};

uint64_t SnapshotStore::regionBytesFor(uint64_t capacityBytes, const SnapshotStoreOptions& options) {
  return geometryFor(capacityBytes, options.chunkBytes, storeChunksFor(capacityBytes, options)).total;
}

std::unique_ptr<SnapshotStore> SnapshotStore::create(std::shared_ptr<Region> region,
                                                     std::shared_ptr<Volume> volume,
                                                     const SnapshotStoreOptions& options) {
  if (!region) throw ArgumentError("snapshot store region must not be null");
  if (!volume) throw ArgumentError("snapshot store volume must not be null");
  if (volume->closed()) throw Error(Code::ERR_VOLUME_CLOSED, "volume is closed");
  checkOptions(volume->capacityBytes(), volume->blockSize(), options);
  if (volume->interceptor() != nullptr) {
    throw Error(Code::ERR_SNAPSHOT_ATTACHED, "the volume object has a write interceptor already");
  }
  const uint64_t storeChunkCount = storeChunksFor(volume->capacityBytes(), options);
  const Geometry g = geometryFor(volume->capacityBytes(), options.chunkBytes, storeChunkCount);
  if (region->byteLength() < g.total) {
    throw Error(Code::ERR_REGION_TOO_SMALL, "snapshot store needs a " + std::to_string(g.total) +
                                                "-byte region, got " +
                                                std::to_string(region->byteLength()));
  }
  uint8_t* header = region->data();
  std::memset(header, 0, kHeaderBytes);
  std::memcpy(header, kMagicBytes, 8);
  writeLittleEndian<uint32_t>(header + 8, kVersion);
  writeLittleEndian<uint32_t>(header + 12, kMaxSnapshots);
  writeLittleEndian<uint64_t>(header + 16, options.chunkBytes);
  writeLittleEndian<uint64_t>(header + 24, volume->capacityBytes());
  writeLittleEndian<uint64_t>(header + 32, volume->volumeId());
  writeLittleEndian<uint64_t>(header + 40, storeChunkCount);
  writeLittleEndian<uint32_t>(header + kCrcByteOffset, crc32c(0, header, kCrcByteOffset));
  std::atomic_thread_fence(std::memory_order_release);
  return open(std::move(region), std::move(volume));
}

std::unique_ptr<SnapshotStore> SnapshotStore::open(std::shared_ptr<Region> region,
                                                   std::shared_ptr<Volume> volume) {
  if (!region) throw ArgumentError("snapshot store region must not be null");
  if (!volume) throw ArgumentError("snapshot store volume must not be null");
  if (volume->closed()) throw Error(Code::ERR_VOLUME_CLOSED, "volume is closed");
  auto bad = [](const std::string& why) {
    return Error(Code::ERR_SNAPSHOT_BAD_HEADER, "snapshot store: " + why);
  };
  if (region->byteLength() < kHeaderBytes) throw bad("region is too small");
  uint8_t* header = region->data();
  if (std::memcmp(header, kMagicBytes, 8) != 0) throw bad("bad magic");
  if (readLittleEndian<uint32_t>(header + 8) != kVersion) throw bad("unsupported version");
  if (readLittleEndian<uint32_t>(header + kCrcByteOffset) != crc32c(0, header, kCrcByteOffset)) {
    throw bad("checksum mismatch");
  }
  const uint64_t chunkBytes = readLittleEndian<uint64_t>(header + 16);
  const uint64_t capacityBytes = readLittleEndian<uint64_t>(header + 24);
  const uint64_t volumeId = readLittleEndian<uint64_t>(header + 32);
  const uint64_t storeChunkCount = readLittleEndian<uint64_t>(header + 40);
  if (readLittleEndian<uint32_t>(header + 12) != kMaxSnapshots || chunkBytes < volume->blockSize() ||
      chunkBytes > kMaxChunkBytes || !std::has_single_bit(chunkBytes) || storeChunkCount == 0 ||
      storeChunkCount >= kZeroChunk) {
    throw bad("inconsistent geometry");
  }
  if (volumeId != volume->volumeId() || capacityBytes != volume->capacityBytes()) {
    throw bad("it belongs to another volume");
  }
  const Geometry g = geometryFor(capacityBytes, chunkBytes, storeChunkCount);
  if (region->byteLength() < g.total) throw bad("region is smaller than its geometry");
  if (volume->interceptor() != nullptr) {
    throw Error(Code::ERR_SNAPSHOT_ATTACHED, "the volume object has a write interceptor already");
  }
  std::unique_ptr<SnapshotStore> store(new SnapshotStore());
  store->header_ = header;
  store->capacityBytes_ = capacityBytes;
  store->chunkBytes_ = chunkBytes;
  store->chunkShift_ = static_cast<uint32_t>(std::countr_zero(chunkBytes));
  store->chunkCount_ = g.chunkCount;
  store->storeChunkCount_ = storeChunkCount;
  store->mapBytes_ = g.mapBytes;
  store->mapsByteOffset_ = g.maps;
  store->epochsByteOffset_ = g.epochs;
  store->countsByteOffset_ = g.counts;
  store->freeStackByteOffset_ = g.freeStack;
  store->storeByteOffset_ = g.store;
  store->region_ = std::move(region);
  store->volume_ = std::move(volume);
  if (word64(header, kHighWaterByteOffset).load(std::memory_order_acquire) > storeChunkCount) {
    throw bad("high-water mark beyond the chunk store");
  }
  store->attach();
  return store;
}

SnapshotStore::~SnapshotStore() { close(); }

void SnapshotStore::attach() {
  volume_->setInterceptor(this);
  attached_ = true;
  try {
    volume_->setInterceptorRequired(true);
  } catch (...) {
    volume_->setInterceptor(nullptr);
    attached_ = false;
    throw;
  }
}

void SnapshotStore::close() noexcept {
  if (volume_) {
    if (attached_ && volume_->interceptor() == this) volume_->setInterceptor(nullptr);
    // An anonymous store dies with this object, and its snapshots with it: the volume no
    // longer needs an interceptor.
    if (region_ && region_->kind() == RegionKind::Anonymous && !volume_->closed()) {
      try {
        volume_->setInterceptorRequired(false);
      } catch (...) {
        // The volume is being closed under us; nothing is left to protect.
      }
    }
  }
  attached_ = false;
  volume_.reset();
  region_.reset();
  header_ = nullptr;
}

void SnapshotStore::checkOpen() const {
  if (region_ == nullptr) throw Error(Code::ERR_SNAPSHOT_CLOSED, "snapshot store is closed");
  if (volume_->closed()) throw Error(Code::ERR_VOLUME_CLOSED, "volume is closed");
}

uint32_t* SnapshotStore::mapOf(uint32_t slot) const noexcept {
  return reinterpret_cast<uint32_t*>(header_ + mapsByteOffset_ + slot * mapBytes_);
}

std::atomic_ref<uint32_t> SnapshotStore::mapEntry(uint32_t slot, uint64_t chunkIndex) const noexcept {
  return std::atomic_ref<uint32_t>(mapOf(slot)[chunkIndex]);
}

std::atomic_ref<uint32_t> SnapshotStore::chunkEpoch(uint64_t chunkIndex) const noexcept {
  return std::atomic_ref<uint32_t>(
      reinterpret_cast<uint32_t*>(header_ + epochsByteOffset_)[chunkIndex]);
}

uint8_t* SnapshotStore::storeChunk(uint32_t storeIndex) const noexcept {
  return header_ + storeByteOffset_ + uint64_t{storeIndex} * chunkBytes_;
}

uint64_t SnapshotStore::chunkLength(uint64_t chunkIndex) const noexcept {
  const uint64_t start = chunkIndex << chunkShift_;
  return std::min(chunkBytes_, capacityBytes_ - start);
}

template <typename Fn>
void SnapshotStore::forEachEntry(uint32_t slot, Fn&& fn) const {
  const uint64_t base = mapsByteOffset_ + slot * mapBytes_;
  const uint64_t end = base + chunkCount_ * 4;
  uint64_t at = base;
  RegionExtent extent{};
  while (at < end && region_->nextAllocated(at, end, extent)) {
    const uint64_t first = (extent.byteOffset - base) / 4;
    const uint64_t last = std::min(chunkCount_, (extent.byteOffset + extent.byteLength - base + 3) / 4);
    for (uint64_t c = first; c < last; c++) {
      const uint32_t entry = mapEntry(slot, c).load(std::memory_order_acquire);
      if (entry != 0) fn(c, entry);
    }
    at = extent.byteOffset + extent.byteLength;
  }
}

uint32_t SnapshotStore::checkSlot(uint32_t slot, uint64_t id) const {
  checkOpen();
  if (slot >= kMaxSnapshots) {
    throw RangeError("snapshot slot " + std::to_string(slot) + " must be below " +
                     std::to_string(kMaxSnapshots));
  }
  const SnapshotState state = entryState(header_, slot);
  if (state == SnapshotState::Free || entryId(header_, slot) != id) {
    throw Error(Code::ERR_SNAPSHOT_NOT_FOUND, "the snapshot was deleted");
  }
  if (state == SnapshotState::Invalid) {
    throw Error(Code::ERR_SNAPSHOT_INVALID,
                "snapshot \"" + entryName(header_, slot) +
                    "\" is invalid: the chunk store overflowed, its old data was not kept");
  }
  return slot;
}

SnapshotInfo SnapshotStore::infoLocked(uint32_t slot) const {
  const uint8_t* entry = entryAt(header_, slot);
  return SnapshotInfo{entryName(header_, slot),
                      slot,
                      entryId(header_, slot),
                      readLittleEndian<uint64_t>(entry + 16),
                      entryState(header_, slot),
                      word64(entryAt(header_, slot), 24).load(std::memory_order_relaxed)};
}

SnapshotInfo SnapshotStore::createSnapshot(const std::string& name) {
  checkOpen();
  validateName(name);
  Lock lock(*this);
  const uint32_t epoch = word32(header_, kEpochByteOffset).load(std::memory_order_relaxed);
  if (epoch >= kMaxEpoch) {
    throw Error(Code::ERR_SNAPSHOT_LIMIT, "the store's create epoch is exhausted");
  }
  uint32_t freeSlot = kMaxSnapshots;
  for (uint32_t slot = 0; slot < kMaxSnapshots; slot++) {
    if (entryState(header_, slot) == SnapshotState::Free) {
      if (freeSlot == kMaxSnapshots) freeSlot = slot;
    } else if (entryName(header_, slot) == name) {
      throw Error(Code::ERR_SNAPSHOT_EXISTS, "snapshot \"" + name + "\" already exists");
    }
  }
  if (freeSlot == kMaxSnapshots) {
    throw Error(Code::ERR_SNAPSHOT_LIMIT, "cannot create snapshot \"" + name + "\": all " +
                                              std::to_string(kMaxSnapshots) +
                                              " snapshot slots of the volume are in use");
  }
  // The map starts clear (delete punched it; a tenant killed mid-delete may have left bytes).
  region_->trim(mapsByteOffset_ + freeSlot * mapBytes_, mapBytes_);
  uint8_t* entry = entryAt(header_, freeSlot);
  std::memset(entry + 4, 0, kEntryBytes - 4);
  word64(entry, 8).store(randomId(), std::memory_order_relaxed);
  writeLittleEndian<uint64_t>(entry + 16, nowMs());
  std::memcpy(entry + 32, name.data(), name.size());
  // State last: a creator killed before this line leaves the slot free. Then the mask, then
  // the epoch: from the epoch bump on, every chunk's next change preserves for this snapshot.
  word32(entry, 0).store(static_cast<uint32_t>(SnapshotState::Valid), std::memory_order_release);
  auto mask = word32(header_, kValidMaskByteOffset);
  mask.store(mask.load(std::memory_order_relaxed) | (1u << freeSlot), std::memory_order_release);
  word32(header_, kEpochByteOffset).store(epoch + 1, std::memory_order_seq_cst);
  return infoLocked(freeSlot);
}

void SnapshotStore::deleteSnapshot(const std::string& name) {
  checkOpen();
  validateName(name);
  Lock lock(*this);
  for (uint32_t slot = 0; slot < kMaxSnapshots; slot++) {
    if (entryState(header_, slot) != SnapshotState::Free && entryName(header_, slot) == name) {
      freeSlotLocked(slot);
      return;
    }
  }
  throw Error(Code::ERR_SNAPSHOT_NOT_FOUND, "snapshot \"" + name + "\" does not exist");
}

void SnapshotStore::freeSlotLocked(uint32_t slot) {
  // Free first: from here on recovery ignores this map, so a kill below leaks nothing.
  word32(entryAt(header_, slot), 0).store(static_cast<uint32_t>(SnapshotState::Free),
                                          std::memory_order_release);
  auto mask = word32(header_, kValidMaskByteOffset);
  mask.store(mask.load(std::memory_order_relaxed) & ~(1u << slot), std::memory_order_release);
  forEachEntry(slot, [this](uint64_t, uint32_t entry) {
    if (entry != kZeroChunk) releaseLocked(entry - 1);
  });
  region_->trim(mapsByteOffset_ + slot * mapBytes_, mapBytes_);
  std::memset(entryAt(header_, slot) + 4, 0, kEntryBytes - 4);
}

uint32_t SnapshotStore::allocateLocked() noexcept {
  auto top = word64(header_, kFreeTopByteOffset);
  const uint64_t freeTop = top.load(std::memory_order_relaxed);
  auto* freeStack = reinterpret_cast<uint32_t*>(header_ + freeStackByteOffset_);
  if (freeTop > 0) {
    const uint32_t index = freeStack[freeTop - 1];
    BM_ASSERT(index < storeChunkCount_);
    top.store(freeTop - 1, std::memory_order_relaxed);
    return index;
  }
  auto highWater = word64(header_, kHighWaterByteOffset);
  const uint64_t next = highWater.load(std::memory_order_relaxed);
  if (next >= storeChunkCount_) return UINT32_MAX;
  highWater.store(next + 1, std::memory_order_relaxed);
  return static_cast<uint32_t>(next);
}

void SnapshotStore::releaseLocked(uint32_t storeIndex) {
  BM_ASSERT(storeIndex < storeChunkCount_);
  auto count = std::atomic_ref<uint32_t>(
      reinterpret_cast<uint32_t*>(header_ + countsByteOffset_)[storeIndex]);
  const uint32_t value = count.load(std::memory_order_relaxed);
  BM_ASSERT(value > 0);
  count.store(value - 1, std::memory_order_relaxed);
  if (value > 1) return;
  // The chunk's memory goes back to the system, and the chunk to the free stack.
  region_->trim(storeByteOffset_ + uint64_t{storeIndex} * chunkBytes_, chunkBytes_);
  auto top = word64(header_, kFreeTopByteOffset);
  const uint64_t freeTop = top.load(std::memory_order_relaxed);
  BM_ASSERT(freeTop < storeChunkCount_);
  reinterpret_cast<uint32_t*>(header_ + freeStackByteOffset_)[freeTop] = storeIndex;
  top.store(freeTop + 1, std::memory_order_release);
}

void SnapshotStore::invalidateLocked(uint32_t mask) {
  for (uint32_t slot = 0; slot < kMaxSnapshots; slot++) {
    if ((mask & (1u << slot)) == 0) continue;
    word32(entryAt(header_, slot), 0).store(static_cast<uint32_t>(SnapshotState::Invalid),
                                            std::memory_order_release);
  }
  auto valid = word32(header_, kValidMaskByteOffset);
  valid.store(valid.load(std::memory_order_relaxed) & ~mask, std::memory_order_release);
  addRelaxed(header_, kOverflowCountByteOffset, static_cast<uint64_t>(std::popcount(mask)));
}

void SnapshotStore::recoverLocked() {
  const uint64_t highWater = word64(header_, kHighWaterByteOffset).load(std::memory_order_relaxed);
  if (highWater > storeChunkCount_) {
    throw Error(Code::ERR_SNAPSHOT_BAD_HEADER, "snapshot store: high-water mark beyond the store");
  }
  auto* counts = reinterpret_cast<uint32_t*>(header_ + countsByteOffset_);
  std::memset(counts, 0, highWater * 4);
  uint32_t valid = 0;
  for (uint32_t slot = 0; slot < kMaxSnapshots; slot++) {
    const SnapshotState state = entryState(header_, slot);
    if (state == SnapshotState::Free) continue;
    if (state == SnapshotState::Valid) valid |= 1u << slot;
    uint64_t preserved = 0;
    forEachEntry(slot, [&](uint64_t, uint32_t entry) {
      preserved++;
      if (entry == kZeroChunk) return;
      if (entry - 1 >= highWater) {
        throw Error(Code::ERR_SNAPSHOT_BAD_HEADER,
                    "snapshot store: a chunk map points beyond the high-water mark");
      }
      counts[entry - 1]++;
    });
    word64(entryAt(header_, slot), 24).store(preserved, std::memory_order_relaxed);
  }
  word32(header_, kValidMaskByteOffset).store(valid, std::memory_order_release);
  auto* freeStack = reinterpret_cast<uint32_t*>(header_ + freeStackByteOffset_);
  uint64_t freeTop = 0;
  for (uint64_t index = 0; index < highWater; index++) {
    if (counts[index] != 0) continue;
    freeStack[freeTop++] = static_cast<uint32_t>(index);
  }
  word64(header_, kFreeTopByteOffset).store(freeTop, std::memory_order_release);
}

void SnapshotStore::preserve(Volume& volume, uint64_t byteOffset, uint64_t byteLength) {
  if (byteLength == 0) return;
  // The fast path: no valid snapshot, or every touched chunk changed since the newest one.
  if (word32(header_, kValidMaskByteOffset).load(std::memory_order_acquire) == 0) return;
  const uint32_t epoch = word32(header_, kEpochByteOffset).load(std::memory_order_acquire);
  const uint64_t first = byteOffset >> chunkShift_;
  const uint64_t last = (byteOffset + byteLength - 1) >> chunkShift_;
  for (uint64_t c = first; c <= last; c++) {
    if (chunkEpoch(c).load(std::memory_order_acquire) == epoch) continue;
    Lock lock(*this);
    const uint32_t current = word32(header_, kEpochByteOffset).load(std::memory_order_acquire);
    for (uint64_t d = c; d <= last; d++) preserveChunkLocked(d, current);
    return;
  }
}

void SnapshotStore::preserveChunkLocked(uint64_t chunkIndex, uint32_t epoch) {
  auto chunkWord = chunkEpoch(chunkIndex);
  if (chunkWord.load(std::memory_order_acquire) == epoch) return;
  const uint32_t valid = word32(header_, kValidMaskByteOffset).load(std::memory_order_acquire);
  uint32_t need = 0;
  for (uint32_t rest = valid; rest != 0; rest &= rest - 1) {
    const uint32_t slot = static_cast<uint32_t>(std::countr_zero(rest));
    if (mapEntry(slot, chunkIndex).load(std::memory_order_relaxed) == 0) need |= 1u << slot;
  }
  if (need != 0) {
    const uint64_t length = chunkLength(chunkIndex);
    const uint64_t source = volume_->dataByteOffset() + (chunkIndex << chunkShift_);
    const std::shared_ptr<Region>& volumeRegion = volume_->region();
    uint32_t entry = kZeroChunk;
    if (!volumeRegion->hasData(source, source + length)) {
      // A hole reads as zeros: preserved without a store chunk.
      addRelaxed(header_, kZeroChunkCountByteOffset, 1);
    } else {
      const uint32_t index = allocateLocked();
      if (index == UINT32_MAX) {
        // The store is full. The host write goes on; the snapshots that needed this chunk
        // cannot be kept whole any more.
        invalidateLocked(need);
        need = 0;
      } else {
        // In the kernel: reading the holes of a shared-memory volume through the mapping would
        // allocate them, and faulting in the fresh store pages one by one costs twice as much.
        region_->copyFrom(storeByteOffset_ + uint64_t{index} * chunkBytes_, *volumeRegion, source, length);
        const auto shareCount = static_cast<uint32_t>(std::popcount(need));
        std::atomic_ref<uint32_t>(reinterpret_cast<uint32_t*>(header_ + countsByteOffset_)[index])
            .store(shareCount, std::memory_order_relaxed);
        addRelaxed(header_, kPreserveCountByteOffset, 1);
        addRelaxed(header_, kPreserveBytesByteOffset, length);
        addRelaxed(header_, kSharedCountByteOffset, shareCount - 1);
        entry = index + 1;
      }
    }
    // The old bytes are in place before any map entry points at them.
    std::atomic_thread_fence(std::memory_order_release);
    for (uint32_t rest = need; rest != 0; rest &= rest - 1) {
      const uint32_t slot = static_cast<uint32_t>(std::countr_zero(rest));
      mapEntry(slot, chunkIndex).store(entry, std::memory_order_release);
      addRelaxed(entryAt(header_, slot), 24, 1);
    }
  }
  // Map entries before the chunk epoch, and both before the volume copies the new data: a
  // reader in another process that still sees the entry clear has read the old bytes.
  std::atomic_thread_fence(std::memory_order_seq_cst);
  chunkWord.store(epoch, std::memory_order_release);
}

bool SnapshotStore::route(Volume&, uint64_t, uint64_t, const uint8_t*, RecordKind) { return false; }

void SnapshotStore::read(uint32_t slot, uint64_t id, uint64_t byteOffset, uint8_t* target,
                         uint64_t byteLength) const {
  checkSlot(slot, id);
  if (byteLength > capacityBytes_ || byteOffset > capacityBytes_ - byteLength) {
    throw RangeError("snapshot read " + rangeText(byteOffset, byteLength) +
                     " is outside the volume (capacity " + std::to_string(capacityBytes_) +
                     " bytes)");
  }
  if (byteLength == 0) return;
  if (target == nullptr) throw ArgumentError("snapshot read target must not be null");
  const std::shared_ptr<Region>& volumeRegion = volume_->region();
  const uint64_t dataByteOffset = volume_->dataByteOffset();
  uint64_t at = byteOffset;
  const uint64_t end = byteOffset + byteLength;
  while (at < end) {
    const uint64_t c = at >> chunkShift_;
    const uint64_t inChunk = at - (c << chunkShift_);
    const uint64_t piece = std::min(end - at, chunkBytes_ - inChunk);
    uint8_t* out = target + (at - byteOffset);
    uint32_t entry = mapEntry(slot, c).load(std::memory_order_acquire);
    if (entry == 0) {
      volumeRegion->read(dataByteOffset + at, out, piece);
      // A writer preserving this chunk now sets the entry before it changes the live bytes.
      std::atomic_thread_fence(std::memory_order_seq_cst);
      entry = mapEntry(slot, c).load(std::memory_order_acquire);
    }
    if (entry == kZeroChunk) {
      std::memset(out, 0, piece);
    } else if (entry != 0) {
      std::memcpy(out, storeChunk(entry - 1) + inChunk, piece);
    }
    at += piece;
  }
  // Invalidated (or deleted) while reading: the unpreserved chunks may hold new data.
  checkSlot(slot, id);
}

std::vector<RegionExtent> SnapshotStore::allocationMap(uint32_t slot, uint64_t id,
                                                       uint64_t byteOffset,
                                                       uint64_t byteLength) const {
  checkSlot(slot, id);
  if (byteLength > capacityBytes_ || byteOffset > capacityBytes_ - byteLength) {
    throw RangeError("snapshot allocationMap " + rangeText(byteOffset, byteLength) +
                     " is outside the volume (capacity " + std::to_string(capacityBytes_) +
                     " bytes)");
  }
  std::vector<RegionExtent> extents;
  auto append = [&extents](uint64_t offset, uint64_t length, bool allocated) {
    if (length == 0) return;
    if (!extents.empty() && extents.back().allocated == allocated &&
        extents.back().byteOffset + extents.back().byteLength == offset) {
      extents.back().byteLength += length;
    } else {
      extents.push_back(RegionExtent{offset, length, allocated});
    }
  };
  const uint64_t end = byteOffset + byteLength;
  uint64_t at = byteOffset;
  while (at < end) {
    // A run of chunks with the same kind of entry: live (0) or preserved.
    const uint64_t c = at >> chunkShift_;
    const uint32_t entry = mapEntry(slot, c).load(std::memory_order_acquire);
    uint64_t runEnd = std::min(end, (c + 1) << chunkShift_);
    if (entry == 0) {
      while (runEnd < end && mapEntry(slot, runEnd >> chunkShift_).load(std::memory_order_acquire) == 0) {
        runEnd = std::min(end, ((runEnd >> chunkShift_) + 1) << chunkShift_);
      }
      for (const RegionExtent& extent : volume_->allocationMap(at, runEnd - at)) {
        append(extent.byteOffset, extent.byteLength, extent.allocated);
      }
    } else {
      append(at, runEnd - at, entry != kZeroChunk);
    }
    at = runEnd;
  }
  checkSlot(slot, id);
  return extents;
}

uint64_t SnapshotStore::restore(uint32_t slot, uint64_t id) {
  checkSlot(slot, id);
  // The entries of this snapshot's map do not change while it exists (only clear entries are
  // ever set, and the writes below preserve for the other snapshots, which this one is not).
  // The lock is not held across the volume writes: their preserve() takes it.
  uint64_t writtenBytes = 0;
  forEachEntry(slot, [&](uint64_t c, uint32_t entry) {
    checkSlot(slot, id);
    const uint64_t byteOffset = c << chunkShift_;
    const uint64_t length = chunkLength(c);
    if (entry == kZeroChunk) {
      volume_->writeZeroes(byteOffset, length, true);
    } else {
      volume_->write(byteOffset, storeChunk(entry - 1), length);
    }
    writtenBytes += length;
  });
  checkSlot(slot, id);
  return writtenBytes;
}

std::vector<SnapshotInfo> SnapshotStore::list() const {
  checkOpen();
  Lock lock(*this);
  std::vector<SnapshotInfo> result;
  for (uint32_t slot = 0; slot < kMaxSnapshots; slot++) {
    if (entryState(header_, slot) != SnapshotState::Free) result.push_back(infoLocked(slot));
  }
  return result;
}

SnapshotInfo SnapshotStore::find(const std::string& name) const {
  checkOpen();
  validateName(name);
  Lock lock(*this);
  for (uint32_t slot = 0; slot < kMaxSnapshots; slot++) {
    if (entryState(header_, slot) != SnapshotState::Free && entryName(header_, slot) == name) {
      return infoLocked(slot);
    }
  }
  throw Error(Code::ERR_SNAPSHOT_NOT_FOUND, "snapshot \"" + name + "\" does not exist");
}

SnapshotInfo SnapshotStore::info(uint32_t slot, uint64_t id) const {
  checkOpen();
  if (slot >= kMaxSnapshots) {
    throw RangeError("snapshot slot " + std::to_string(slot) + " must be below " +
                     std::to_string(kMaxSnapshots));
  }
  Lock lock(*this);
  if (entryState(header_, slot) == SnapshotState::Free || entryId(header_, slot) != id) {
    throw Error(Code::ERR_SNAPSHOT_NOT_FOUND, "the snapshot was deleted");
  }
  return infoLocked(slot);
}

SnapshotStoreStats SnapshotStore::stats() const {
  checkOpen();
  auto load = [this](uint64_t byteOffset) {
    return word64(header_, byteOffset).load(std::memory_order_relaxed);
  };
  uint32_t snapshotCount = 0;
  for (uint32_t slot = 0; slot < kMaxSnapshots; slot++) {
    if (entryState(header_, slot) != SnapshotState::Free) snapshotCount++;
  }
  return SnapshotStoreStats{chunkBytes_,
                            storeChunkCount_,
                            load(kHighWaterByteOffset) - load(kFreeTopByteOffset),
                            load(kPreserveCountByteOffset),
                            load(kPreserveBytesByteOffset),
                            load(kSharedCountByteOffset),
                            load(kZeroChunkCountByteOffset),
                            load(kOverflowCountByteOffset),
                            snapshotCount};
}

void SnapshotStore::destroy() {
  checkOpen();
  {
    Lock lock(*this);
    for (uint32_t slot = 0; slot < kMaxSnapshots; slot++) {
      if (entryState(header_, slot) != SnapshotState::Free) freeSlotLocked(slot);
    }
  }
  volume_->setInterceptorRequired(false);
  close();
}

}  // namespace bm
