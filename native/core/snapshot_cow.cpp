// Notes on the design
// -------------------
// The copy-on-write half of a SnapshotStore (snapshot.hpp has the model and the crash argument):
// the per-snapshot chunk maps and the chunk epochs, the chunk store allocator (a high-water mark
// and a free stack, rebuilt from the maps by recoverLocked when a lock holder died), preserve()
// on the volume's write path, and the readers of a snapshot (read, allocationMap, restore).
// Counters and allocator words change under the store lock only (snapshot_internal.hpp).
#include <algorithm>
#include <atomic>
#include <bit>
#include <cstring>
#include <string>

#include "errors.hpp"
#include "snapshot.hpp"
#include "snapshot_internal.hpp"

namespace bm {

using namespace snapshot_internal;

namespace {

std::string rangeText(uint64_t byteOffset, uint64_t byteLength) {
  return "[" + std::to_string(byteOffset) + ", +" + std::to_string(byteLength) + ")";
}

}  // namespace

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

}  // namespace bm
