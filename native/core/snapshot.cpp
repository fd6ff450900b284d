// Notes on the design
// -------------------
// See snapshot.hpp for the model, the layout and the crash argument. Implementation notes:
//
// The code is split by concern: this file (format, open, attach and close, the snapshot
// directory: create, delete, list, find, info, stats, destroy), snapshot_cow.cpp (the chunk
// maps, the chunk store allocator and its recovery, preserve, snapshot reads, allocation maps and
// restore) and snapshot_internal.hpp (the header layout and the store lock they share).
#include "snapshot.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <chrono>
#include <cstring>
#include <random>

#include "byte_order.hpp"
#include "crc32c.hpp"
#include "errors.hpp"
#include "snapshot_internal.hpp"

namespace bm {

using namespace snapshot_internal;

namespace {

uint64_t roundUp(uint64_t value, uint64_t unit) noexcept { return (value + unit - 1) / unit * unit; }

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
