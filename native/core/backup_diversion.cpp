#include "backup_diversion.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "errors.hpp"

namespace bm {

namespace {

constexpr char kMagic[8] = {'B', 'M', 'B', 'K', 'U', 'P', '0', '1'};
constexpr uint64_t kBlockBytesOffset = 8;   // u32
constexpr uint64_t kStateOffset = 12;       // u32
constexpr uint64_t kBlockCountOffset = 16;  // u64
constexpr uint64_t kCursorOffset = 24;      // u64: next block to copy back
constexpr uint64_t kCountOffset = 32;       // u64: blocks diverted now
constexpr uint64_t kStatsOffset = 64;       // 4 x u64

std::atomic_ref<uint32_t> word32(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + byteOffset));
}
std::atomic_ref<uint64_t> word64(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + byteOffset));
}
void bump(uint8_t* header, uint64_t byteOffset, int64_t by = 1) noexcept {
  auto w = word64(header, byteOffset);
  w.store(w.load(std::memory_order_relaxed) + static_cast<uint64_t>(by), std::memory_order_relaxed);
}
bool validBlockBytes(uint64_t blockBytes) noexcept {
  return blockBytes >= 512 && blockBytes <= (1u << 20) && (blockBytes & (blockBytes - 1)) == 0;
}
void merge(uint8_t* block, uint64_t within, const uint8_t* piece, uint64_t n) noexcept {
  if (piece == nullptr) std::memset(block + within, 0, n);
  else std::memcpy(block + within, piece, n);
}

}  // namespace

uint64_t BackupVolume::regionBytesFor(uint64_t byteLength, uint32_t blockBytes) {
  const uint64_t blocks = blockBytes == 0 ? 0 : byteLength / blockBytes;
  return kHeaderBytes + (blocks + 63) / 64 * 8;
}

std::shared_ptr<BackupVolume> BackupVolume::create(std::shared_ptr<Region> region, uint64_t byteLength, uint32_t blockBytes) {
  if (!region || region->closed()) throw Error(Code::ERR_REGION_CLOSED, "backup volume region is closed");
  if (!validBlockBytes(blockBytes)) throw RangeError("blockBytes must be a power of two from 512 to 1 MiB");
  if (byteLength == 0 || byteLength % blockBytes != 0) throw RangeError("byteLength must be a positive multiple of blockBytes");
  if (region->byteLength() < regionBytesFor(byteLength, blockBytes)) throw RangeError("the region is too small for the backup volume's bitmap");
  uint8_t* header = region->data();
  std::memset(header, 0, regionBytesFor(byteLength, blockBytes));
  word32(header, kBlockBytesOffset).store(blockBytes, std::memory_order_relaxed);
  word64(header, kBlockCountOffset).store(byteLength / blockBytes, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(header, kMagic, sizeof kMagic);
  return open(std::move(region));
}

std::shared_ptr<BackupVolume> BackupVolume::open(std::shared_ptr<Region> region) {
  if (!region || region->closed()) throw Error(Code::ERR_REGION_CLOSED, "backup volume region is closed");
  if (region->byteLength() < kHeaderBytes) throw Error(Code::ERR_DIVERSION_BAD_HEADER, "region too small for a backup volume");
  uint8_t* header = region->data();
  if (std::memcmp(header, kMagic, sizeof kMagic) != 0) throw Error(Code::ERR_DIVERSION_BAD_HEADER, "region is not a backup volume (magic)");
  const uint32_t blockBytes = word32(header, kBlockBytesOffset).load(std::memory_order_relaxed);
  const uint64_t blocks = word64(header, kBlockCountOffset).load(std::memory_order_relaxed);
  const uint32_t state = word32(header, kStateOffset).load(std::memory_order_relaxed);
  if (!validBlockBytes(blockBytes) || blocks == 0 || blocks > (uint64_t(1) << 40) ||
      region->byteLength() < regionBytesFor(blocks * blockBytes, blockBytes) ||
      (state != static_cast<uint32_t>(WorkState::Unused) && state != static_cast<uint32_t>(WorkState::Diverting) &&
       state != static_cast<uint32_t>(WorkState::CopyingBack)) ||
      word64(header, kCursorOffset).load() > blocks || word64(header, kCountOffset).load() > blocks) {
    throw Error(Code::ERR_DIVERSION_BAD_HEADER, "backup volume header is damaged");
  }
  std::shared_ptr<BackupVolume> backup(new BackupVolume());
  backup->region_ = std::move(region);
  backup->header_ = header;
  backup->bitmap_ = reinterpret_cast<uint64_t*>(header + kHeaderBytes);
  backup->blockCount_ = blocks;
  backup->blockBytes_ = blockBytes;
  backup->scratch_.assign(blockBytes, 0);
  return backup;
}

WorkState BackupVolume::state() const noexcept {
  return static_cast<WorkState>(word32(header_, kStateOffset).load(std::memory_order_acquire));
}
uint64_t BackupVolume::divertedCount() const noexcept { return word64(header_, kCountOffset).load(std::memory_order_relaxed); }
uint64_t BackupVolume::copyBackCursor() const noexcept { return word64(header_, kCursorOffset).load(std::memory_order_relaxed); }

bool BackupVolume::diverted(uint64_t block) const noexcept {
  if (block >= blockCount_) return false;
  return (std::atomic_ref<uint64_t>(bitmap_[block / 64]).load(std::memory_order_acquire) >> (block % 64)) & 1;
}

void BackupVolume::setBit(uint64_t block, bool value) noexcept {
  std::atomic_ref<uint64_t> word(bitmap_[block / 64]);
  const uint64_t mask = uint64_t(1) << (block % 64);
  if (value) {
    if ((word.fetch_or(mask, std::memory_order_release) & mask) == 0) bump(header_, kCountOffset);
  } else if ((word.fetch_and(~mask, std::memory_order_release) & mask) != 0) {
    bump(header_, kCountOffset, -1);
  }
}

BackupStats BackupVolume::stats() const noexcept {
  auto at = [&](int i) { return word64(header_, kStatsOffset + 8 * i).load(std::memory_order_relaxed); };
  return BackupStats{at(0), at(1), at(2), at(3)};
}

void BackupVolume::start() {
  if (state() != WorkState::Unused) throw Error(Code::ERR_DIVERSION_STATE, "the backup volume is in use");
  if (!secondary_) throw Error(Code::ERR_DIVERSION_STATE, "the backup volume has no secondary");
  word32(header_, kStateOffset).store(static_cast<uint32_t>(WorkState::Diverting), std::memory_order_release);
}

void BackupVolume::beginCopyBack() {
  if (state() != WorkState::Diverting) throw Error(Code::ERR_DIVERSION_STATE, "the backup volume is not diverting");
  word64(header_, kCursorOffset).store(0, std::memory_order_relaxed);
  word32(header_, kStateOffset).store(static_cast<uint32_t>(WorkState::CopyingBack), std::memory_order_release);
}

void BackupVolume::copyBlockBack(uint64_t block, MainStore& main) {
  secondary_->loadMain(block * blockBytes_, scratch_.data(), blockBytes_);
  main.storeMain(block * blockBytes_, scratch_.data(), blockBytes_);
  setBit(block, false);
  bump(header_, kStatsOffset + 24);
}

uint64_t BackupVolume::copyBackStep(uint64_t maxBlocks) {
  if (state() != WorkState::CopyingBack) throw Error(Code::ERR_DIVERSION_STATE, "the backup volume is not copying back");
  if (main_ == nullptr || !secondary_) throw Error(Code::ERR_DIVERSION_STATE, "the backup volume's main or secondary is not attached");
  uint64_t cursor = copyBackCursor();
  const uint64_t start = cursor;
  const uint64_t end = std::min(blockCount_, cursor + std::max<uint64_t>(1, maxBlocks));
  while (cursor < end) {
    const uint64_t word = std::atomic_ref<uint64_t>(bitmap_[cursor / 64]).load(std::memory_order_acquire) >> (cursor % 64);
    if (word == 0) {  // nothing set in the rest of this word
      cursor = std::min(end, (cursor / 64 + 1) * 64);
      continue;
    }
    if (word & 1) copyBlockBack(cursor, *main_);  // throws with the cursor kept at this block
    cursor++;
    word64(header_, kCursorOffset).store(cursor, std::memory_order_relaxed);
  }
  word64(header_, kCursorOffset).store(cursor, std::memory_order_relaxed);
  if (cursor >= blockCount_) {
    word64(header_, kCursorOffset).store(0, std::memory_order_relaxed);
    word32(header_, kStateOffset).store(static_cast<uint32_t>(WorkState::Unused), std::memory_order_release);
  }
  return cursor - start;
}

void BackupVolume::store(uint64_t byteOffset, const uint8_t* data, uint64_t byteLength, MainStore& main) {
  const WorkState s = state();
  if (s == WorkState::Unused || !secondary_) {
    main.storeMain(byteOffset, data, byteLength);
    return;
  }
  uint64_t done = 0;
  while (done < byteLength) {
    const uint64_t offset = byteOffset + done;
    const uint64_t block = offset / blockBytes_;
    const uint64_t within = offset % blockBytes_;
    const uint64_t n = std::min<uint64_t>(blockBytes_ - within, byteLength - done);
    const uint8_t* piece = data == nullptr ? nullptr : data + done;
    const bool set = diverted(block);
    if (s == WorkState::CopyingBack) {
      if (set) copyBlockBack(block, main);  // this write then lands on the newest bytes
      main.storeMain(offset, piece, n);
    } else if (set) {
      try {
        secondary_->storeMain(offset, piece, n);
      } catch (const Error&) {
        // The secondary cannot take it: its copy, merged, goes to the main (a failed read throws on).
        secondary_->loadMain(block * blockBytes_, scratch_.data(), blockBytes_);
        merge(scratch_.data(), within, piece, n);
        main.storeMain(block * blockBytes_, scratch_.data(), blockBytes_);
        setBit(block, false);
        bump(header_, kStatsOffset + 16);
        done += n;
        continue;
      }
      bump(header_, kStatsOffset);
    } else {
      const uint8_t* whole = piece;
      if (n != blockBytes_) {
        main.loadMain(block * blockBytes_, scratch_.data(), blockBytes_);
        merge(scratch_.data(), within, piece, n);
        whole = scratch_.data();
      }
      bool stored = true;
      try {
        secondary_->storeMain(block * blockBytes_, whole, blockBytes_);
      } catch (const Error&) {
        stored = false;
      }
      if (stored) {
        setBit(block, true);  // after the data: a SIGKILL before leaves the main's bytes in force
        bump(header_, kStatsOffset);
      } else {
        main.storeMain(block * blockBytes_, whole, blockBytes_);
        bump(header_, kStatsOffset + 16);
      }
    }
    done += n;
  }
}

void BackupVolume::load(uint64_t byteOffset, uint8_t* target, uint64_t byteLength, MainStore& main) {
  if (state() == WorkState::Unused || !secondary_) {
    main.loadMain(byteOffset, target, byteLength);
    return;
  }
  uint64_t done = 0;
  uint64_t runStart = 0, runLength = 0;
  bool runDiverted = false;
  auto flush = [&] {
    if (runLength == 0) return;
    if (runDiverted) {
      secondary_->loadMain(byteOffset + runStart, target + runStart, runLength);
      bump(header_, kStatsOffset + 8);
    } else {
      main.loadMain(byteOffset + runStart, target + runStart, runLength);
    }
    runLength = 0;
  };
  while (done < byteLength) {
    const uint64_t offset = byteOffset + done;
    const uint64_t n = std::min<uint64_t>(blockBytes_ - offset % blockBytes_, byteLength - done);
    const bool set = diverted(offset / blockBytes_);
    if (runLength != 0 && set != runDiverted) flush();
    if (runLength == 0) {
      runStart = done;
      runDiverted = set;
    }
    runLength += n;
    done += n;
  }
  flush();
}

}  // namespace bm
