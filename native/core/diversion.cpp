#include "diversion.hpp"

#include <algorithm>
#include <cerrno>
#include <atomic>
#include <cstring>
#include <string>

#include "errors.hpp"

namespace bm {

namespace {

constexpr char kMagic[8] = {'B', 'M', 'W', 'O', 'R', 'K', '0', '1'};
constexpr uint64_t kSlotBytesOffset = 8;    // u32
constexpr uint64_t kStateOffset = 12;       // u32
constexpr uint64_t kSlotCountOffset = 16;   // u64
constexpr uint64_t kTerminalOffset = 24;    // u64
constexpr uint64_t kMainCountOffset = 32;   // u32
constexpr uint64_t kCopyCursorOffset = 40;  // u64: next slot to copy back (1-based)
constexpr uint64_t kDataDiskIdOffset = 48;  // u64: the data disk's id (variant (c)); 0: slots in the region
constexpr uint64_t kStatsOffset = 64;       // 6 x u64
constexpr uint64_t kMainsOffset = 128;      // kMaxMains x u64

std::atomic_ref<uint32_t> word32(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + byteOffset));
}
std::atomic_ref<uint64_t> word64(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + byteOffset));
}
std::atomic_ref<uint64_t> cell(uint64_t* p) noexcept { return std::atomic_ref<uint64_t>(*p); }

uint64_t mapCapacityFor(uint64_t slotCount) noexcept {
  uint64_t capacity = 16;
  while (capacity < 2 * slotCount) capacity <<= 1;
  return capacity;
}

uint64_t roundUp(uint64_t value, uint64_t unit) noexcept { return (value + unit - 1) / unit * unit; }

struct Layout {
  uint64_t bitmap, reverse, map, data, total;
};

Layout layoutFor(uint64_t slotCount, uint32_t slotBytes, bool dataOnDisk) noexcept {
  Layout l{};
  l.bitmap = WorkVolume::kHeaderBytes;
  l.reverse = l.bitmap + roundUp((slotCount + 63) / 64 * 8, 8);
  l.map = l.reverse + slotCount * 8;
  if (dataOnDisk) {
    l.data = l.map + mapCapacityFor(slotCount) * 16;
    l.total = l.data;
  } else {
    l.data = roundUp(l.map + mapCapacityFor(slotCount) * 16, std::max<uint64_t>(slotBytes, 4096));
    l.total = l.data + slotCount * slotBytes;
  }
  return l;
}

uint64_t keyOf(uint32_t main, uint64_t block) noexcept { return (uint64_t(main) + 1) << 56 | block; }

void mergeInto(uint8_t* block, uint64_t within, const uint8_t* piece, uint64_t n) noexcept {
  if (piece == nullptr) std::memset(block + within, 0, n);
  else std::memcpy(block + within, piece, n);
}

uint64_t hashOf(uint64_t key) noexcept {
  key ^= key >> 33;
  key *= 0xff51afd7ed558ccdULL;
  key ^= key >> 33;
  return key;
}

void bump(uint8_t* header, int index) noexcept {
  auto w = word64(header, kStatsOffset + 8 * index);
  w.store(w.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
}

}  // namespace

uint64_t WorkVolume::regionBytesFor(uint64_t slotCount, uint32_t slotBytes, bool dataOnDisk) {
  return layoutFor(slotCount, slotBytes, dataOnDisk).total;
}

std::shared_ptr<WorkVolume> WorkVolume::create(std::shared_ptr<Region> region, uint64_t slotCount, uint32_t slotBytes,
                                               std::shared_ptr<Disk> dataDisk) {
  if (!region || region->closed()) throw Error(Code::ERR_REGION_CLOSED, "work volume region is closed");
  if (slotBytes < 512 || slotBytes > 65536 || (slotBytes & (slotBytes - 1)) != 0) throw RangeError("slotBytes must be a power of two from 512 to 65536");
  if (slotCount == 0 || slotCount > kMaxSlots) throw RangeError("slotCount must be 1 to 2^32");
  const bool onDisk = dataDisk != nullptr;
  if (onDisk) {
    if (dataDisk->closed()) throw Error(Code::ERR_DISK_CLOSED, "the work disk is closed");
    if (slotBytes % dataDisk->sectorSize() != 0) throw RangeError("slotBytes must be a multiple of the work disk's sector size");
    if (slotCount > dataDisk->capacityBytes() / slotBytes) throw RangeError("slotCount x slotBytes exceeds the work disk's capacity");
  }
  if (region->byteLength() < regionBytesFor(slotCount, slotBytes, onDisk)) throw RangeError("the region is too small for the work volume");
  uint8_t* header = region->data();
  std::memset(header, 0, kHeaderBytes);
  const Layout l = layoutFor(slotCount, slotBytes, onDisk);
  std::memset(header + l.bitmap, 0, l.data - l.bitmap);
  word32(header, kSlotBytesOffset).store(slotBytes, std::memory_order_relaxed);
  word64(header, kSlotCountOffset).store(slotCount, std::memory_order_relaxed);
  word64(header, kDataDiskIdOffset).store(onDisk ? dataDisk->diskId() : 0, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(header, kMagic, sizeof kMagic);
  return open(std::move(region), std::move(dataDisk));
}

std::shared_ptr<WorkVolume> WorkVolume::open(std::shared_ptr<Region> region, std::shared_ptr<Disk> dataDisk) {
  if (!region || region->closed()) throw Error(Code::ERR_REGION_CLOSED, "work volume region is closed");
  if (region->byteLength() < kHeaderBytes) throw Error(Code::ERR_DIVERSION_BAD_HEADER, "region too small for a work volume");
  uint8_t* header = region->data();
  if (std::memcmp(header, kMagic, sizeof kMagic) != 0) throw Error(Code::ERR_DIVERSION_BAD_HEADER, "region is not a work volume (magic)");
  const uint32_t slotBytes = word32(header, kSlotBytesOffset).load(std::memory_order_relaxed);
  const uint64_t slotCount = word64(header, kSlotCountOffset).load(std::memory_order_relaxed);
  const uint64_t dataDiskId = word64(header, kDataDiskIdOffset).load(std::memory_order_relaxed);
  if (dataDiskId == 0 && dataDisk != nullptr) throw Error(Code::ERR_DIVERSION_BAD_HEADER, "the work volume keeps its slots in its region, not on a disk");
  if (dataDiskId != 0 && (dataDisk == nullptr || dataDisk->closed() || dataDisk->diskId() != dataDiskId)) {
    throw Error(Code::ERR_DIVERSION_BAD_HEADER, "the work disk's map names another disk (id " + std::to_string(dataDiskId) + ")");
  }
  if (slotBytes < 512 || slotBytes > 65536 || (slotBytes & (slotBytes - 1)) != 0 || slotCount == 0 || slotCount > kMaxSlots ||
      region->byteLength() < regionBytesFor(slotCount, slotBytes, dataDiskId != 0) ||
      (dataDiskId != 0 && slotCount > dataDisk->capacityBytes() / slotBytes) || word32(header, kStateOffset).load() > 3 ||
      word64(header, kTerminalOffset).load() > slotCount || word32(header, kMainCountOffset).load() > kMaxMains) {
    throw Error(Code::ERR_DIVERSION_BAD_HEADER, "work volume header is damaged");
  }
  std::shared_ptr<WorkVolume> work(new WorkVolume());
  work->region_ = std::move(region);
  work->header_ = header;
  work->slotBytes_ = slotBytes;
  work->slotCount_ = slotCount;
  work->disk_ = std::move(dataDisk);
  work->layout();
  return work;
}

void WorkVolume::layout() {
  const Layout l = layoutFor(slotCount_, slotBytes_, disk_ != nullptr);
  bitmap_ = reinterpret_cast<uint64_t*>(header_ + l.bitmap);
  reverse_ = reinterpret_cast<uint64_t*>(header_ + l.reverse);
  map_ = reinterpret_cast<uint64_t*>(header_ + l.map);
  data_ = header_ + l.data;
  mapCapacity_ = mapCapacityFor(slotCount_);
  scratch_.assign(slotBytes_, 0);
}

WorkState WorkVolume::state() const noexcept { return static_cast<WorkState>(word32(header_, kStateOffset).load(std::memory_order_acquire)); }
uint64_t WorkVolume::terminal() const noexcept { return word64(header_, kTerminalOffset).load(std::memory_order_acquire); }
uint64_t WorkVolume::copyBackCursor() const noexcept { return word64(header_, kCopyCursorOffset).load(std::memory_order_relaxed); }

std::vector<uint64_t> WorkVolume::mains() const {
  std::vector<uint64_t> result;
  const uint32_t count = word32(header_, kMainCountOffset).load(std::memory_order_acquire);
  for (uint32_t i = 0; i < count; i++) result.push_back(word64(header_, kMainsOffset + 8 * i).load(std::memory_order_relaxed));
  return result;
}

bool WorkVolume::slotWritten(uint64_t slot) const {
  if (slot == 0 || slot > slotCount_) throw RangeError("slot out of range");
  return (cell(&bitmap_[(slot - 1) / 64]).load(std::memory_order_relaxed) >> ((slot - 1) % 64)) & 1;
}

WorkStats WorkVolume::stats() const noexcept {
  auto at = [&](int i) { return word64(header_, kStatsOffset + 8 * i).load(std::memory_order_relaxed); };
  return WorkStats{at(0), at(1), at(2), at(3), at(4), at(5)};
}

uint32_t WorkVolume::registerMain(uint64_t mainId) {
  const uint32_t count = word32(header_, kMainCountOffset).load(std::memory_order_acquire);
  for (uint32_t i = 0; i < count; i++) {
    if (word64(header_, kMainsOffset + 8 * i).load(std::memory_order_relaxed) == mainId) return i;
  }
  if (count >= kMaxMains) throw Error(Code::ERR_DIVERSION_MAINS_FULL, "the work volume serves " + std::to_string(kMaxMains) + " main volumes already");
  word64(header_, kMainsOffset + 8 * count).store(mainId, std::memory_order_relaxed);
  word32(header_, kMainCountOffset).store(count + 1, std::memory_order_release);
  return count;
}

void WorkVolume::start() {
  if (state() != WorkState::Unused) throw Error(Code::ERR_DIVERSION_STATE, "the work volume is in use");
  word32(header_, kStateOffset).store(static_cast<uint32_t>(WorkState::Diverting), std::memory_order_release);
}

void WorkVolume::beginCopyBack() {
  const WorkState s = state();
  if (s != WorkState::Diverting && s != WorkState::Full) throw Error(Code::ERR_DIVERSION_STATE, "the work volume is not diverting");
  word64(header_, kCopyCursorOffset).store(1, std::memory_order_relaxed);
  word32(header_, kStateOffset).store(static_cast<uint32_t>(WorkState::CopyingBack), std::memory_order_release);
}

uint64_t* WorkVolume::findEntry(uint64_t key) const noexcept {
  uint64_t i = hashOf(key) & (mapCapacity_ - 1);
  for (;;) {
    uint64_t* entry = map_ + 2 * i;
    const uint64_t k = cell(entry).load(std::memory_order_relaxed);
    if (k == key || k == 0) return entry;
    i = (i + 1) & (mapCapacity_ - 1);
  }
}

uint64_t WorkVolume::lookup(uint32_t main, uint64_t block) const noexcept {
  const uint64_t* entry = findEntry(keyOf(main, block));
  return entry[0] == 0 ? 0 : cell(const_cast<uint64_t*>(entry) + 1).load(std::memory_order_acquire);
}

bool WorkVolume::writeSlot(uint64_t slot, uint64_t within, const uint8_t* data, uint64_t n) noexcept {
  if (disk_ == nullptr) {
    if (data == nullptr) std::memset(slotData(slot) + within, 0, n);
    else std::memcpy(slotData(slot) + within, data, n);
    return true;
  }
  int failure = 0;
  try {
    failure = disk_->write((slot - 1) * slotBytes_ + within, data, n);
  } catch (const Error&) {
    failure = EIO;  // the data disk was closed under the diversion: a failed slot I/O like any other
  }
  if (failure == 0) return true;
  bump(header_, 5);
  return false;
}

bool WorkVolume::readSlot(uint64_t slot, uint64_t within, uint8_t* target, uint64_t n) noexcept {
  if (disk_ == nullptr) {
    std::memcpy(target, slotData(slot) + within, n);
    return true;
  }
  int failure = 0;
  try {
    failure = disk_->read((slot - 1) * slotBytes_ + within, target, n);
  } catch (const Error&) {
    failure = EIO;
  }
  if (failure == 0) return true;
  bump(header_, 5);
  return false;
}

void WorkVolume::fallBack(uint64_t* entry, uint64_t block, const uint8_t* merged, MainStore& inner) {
  inner.storeMain(block * slotBytes_, merged, slotBytes_);
  if (entry[0] != 0) cell(entry + 1).store(0, std::memory_order_release);  // the main store has the newest bytes now
  bump(header_, 1);
}

bool WorkVolume::append(uint64_t key, uint64_t* entry, const uint8_t* block) {
  const uint64_t slot = terminal() + 1;
  word64(header_, kTerminalOffset).store(slot, std::memory_order_release);  // reserved first
  if (slot == slotCount_) word32(header_, kStateOffset).store(static_cast<uint32_t>(WorkState::Full), std::memory_order_release);
  if (!writeSlot(slot, 0, block, slotBytes_)) return false;  // the slot is wasted, its bitmap bit stays clear
  cell(&reverse_[slot - 1]).store(key, std::memory_order_relaxed);
  cell(&bitmap_[(slot - 1) / 64]).fetch_or(uint64_t(1) << ((slot - 1) % 64), std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_release);
  if (entry[0] == 0) {
    cell(entry + 1).store(slot, std::memory_order_relaxed);
    cell(entry).store(key, std::memory_order_release);
  } else {
    cell(entry + 1).store(slot, std::memory_order_release);  // the newest wins
  }
  bump(header_, 0);
  return true;
}

void WorkVolume::loadNewest(uint64_t slot, uint64_t block, MainStore& inner) {
  if (readSlot(slot, 0, scratch_.data(), slotBytes_)) return;
  if (!inner.rebuildMain(block * slotBytes_, scratch_.data(), slotBytes_)) throw SlotIoError{EIO};
}

void WorkVolume::copyBlockBack(uint64_t slot, uint64_t key, uint64_t* entry, MainStore& inner) {
  const uint64_t block = key & ((uint64_t(1) << 56) - 1);
  const uint8_t* bytes = slotData(slot);
  if (disk_ != nullptr) {
    loadNewest(slot, block, inner);
    bytes = scratch_.data();
  }
  inner.storeMain(block * slotBytes_, bytes, slotBytes_);
  cell(entry + 1).store(0, std::memory_order_release);
  bump(header_, 3);
}

void WorkVolume::store(uint32_t main, uint64_t byteOffset, const uint8_t* data, uint64_t byteLength, MainStore& inner,
                       bool appendNew) {
  const WorkState s = state();
  if (s == WorkState::Unused) {
    inner.storeMain(byteOffset, data, byteLength);
    return;
  }
  uint64_t done = 0;
  while (done < byteLength) {
    const uint64_t offset = byteOffset + done;
    const uint64_t block = offset / slotBytes_;
    const uint64_t within = offset % slotBytes_;
    const uint64_t n = std::min<uint64_t>(slotBytes_ - within, byteLength - done);
    const uint8_t* piece = data == nullptr ? nullptr : data + done;
    const uint64_t key = keyOf(main, block);
    uint64_t* entry = findEntry(key);
    const uint64_t slot = entry[0] == 0 ? 0 : cell(entry + 1).load(std::memory_order_relaxed);
    const WorkState now = state();
    if (now == WorkState::CopyingBack) {
      // A diverted block goes back first, so this write lands on the newest bytes.
      if (slot != 0) copyBlockBack(slot, key, entry, inner);
      inner.storeMain(offset, piece, n);
    } else if (!appendNew || now == WorkState::Full || terminal() >= slotCount_) {
      if (slot == 0) {
        inner.storeMain(offset, piece, n);
        if (appendNew) bump(header_, 1);
      } else if (writeSlot(slot, within, piece, n)) {
        bump(header_, 2);
      } else {
        // The slot cannot take it: the whole block, merged, goes to the main store.
        loadNewest(slot, block, inner);
        mergeInto(scratch_.data(), within, piece, n);
        fallBack(entry, block, scratch_.data(), inner);
      }
    } else if (n == slotBytes_) {
      if (!append(key, entry, piece)) fallBack(entry, block, piece, inner);
    } else {
      // A partial block: the rest comes from the newest copy.
      if (slot != 0) {
        loadNewest(slot, block, inner);
      } else {
        inner.loadMain(block * slotBytes_, scratch_.data(), slotBytes_);
      }
      mergeInto(scratch_.data(), within, piece, n);
      if (!append(key, entry, scratch_.data())) fallBack(entry, block, scratch_.data(), inner);
    }
    done += n;
  }
}

void WorkVolume::load(uint32_t main, uint64_t byteOffset, uint8_t* target, uint64_t byteLength, MainStore& inner) {
  if (state() == WorkState::Unused) {
    inner.loadMain(byteOffset, target, byteLength);
    return;
  }
  uint64_t done = 0;
  uint64_t runStart = 0, runLength = 0;  // a run of blocks not diverted, read from the main store at once
  while (done < byteLength) {
    const uint64_t offset = byteOffset + done;
    const uint64_t within = offset % slotBytes_;
    const uint64_t n = std::min<uint64_t>(slotBytes_ - within, byteLength - done);
    const uint64_t slot = lookup(main, offset / slotBytes_);
    if (slot == 0) {
      if (runLength == 0) runStart = done;
      runLength += n;
    } else {
      if (runLength != 0) inner.loadMain(byteOffset + runStart, target + runStart, runLength);
      runLength = 0;
      if (!readSlot(slot, within, target + done, n)) throw SlotIoError{EIO};
      bump(header_, 4);
    }
    done += n;
  }
  if (runLength != 0) inner.loadMain(byteOffset + runStart, target + runStart, runLength);
}

void WorkVolume::attach(uint32_t main, MainStore* store) noexcept {
  if (main < kMaxMains) attached_[main] = store;
}

void WorkVolume::detach(MainStore* store) noexcept {
  for (MainStore*& entry : attached_) {
    if (entry == store) entry = nullptr;
  }
}

uint64_t WorkVolume::copyBackStep(uint64_t maxSlots) {
  if (state() != WorkState::CopyingBack) throw Error(Code::ERR_DIVERSION_STATE, "the work volume is not copying back");
  uint64_t cursor = copyBackCursor();
  const uint64_t end = std::min(terminal() + 1, cursor + std::max<uint64_t>(1, maxSlots));
  const uint64_t start = cursor;
  for (; cursor < end; cursor++) {
    const uint64_t key = cell(&reverse_[cursor - 1]).load(std::memory_order_relaxed);
    uint64_t* entry = findEntry(key);
    if (key == 0 || entry[0] == 0 || cell(entry + 1).load(std::memory_order_relaxed) != cursor) continue;  // older copy
    const uint32_t main = static_cast<uint32_t>(key >> 56) - 1;
    if (main >= kMaxMains || attached_[main] == nullptr) {
      word64(header_, kCopyCursorOffset).store(cursor, std::memory_order_relaxed);
      throw Error(Code::ERR_DIVERSION_STATE, "main volume " + std::to_string(main) + " of the work volume is not attached");
    }
    try {
      copyBlockBack(cursor, key, entry, *attached_[main]);
    } catch (const SlotIoError& failure) {
      word64(header_, kCopyCursorOffset).store(cursor, std::memory_order_relaxed);
      throw Error(Code::ERR_DIVERSION_IO_FAILED, "copy-back of slot " + std::to_string(cursor) + ": a disk failed the I/O (errno " +
                                                     std::to_string(failure.errnoValue) + "); the cursor stays there");
    }
    word64(header_, kCopyCursorOffset).store(cursor + 1, std::memory_order_relaxed);
  }
  word64(header_, kCopyCursorOffset).store(cursor, std::memory_order_relaxed);
  if (cursor > terminal()) reset();
  return cursor - start;
}

std::vector<WorkMapEntry> WorkVolume::entries(uint64_t maxEntries) const {
  std::vector<WorkMapEntry> result;
  const uint64_t last = terminal();
  for (uint64_t slot = 1; slot <= last && result.size() < maxEntries; slot++) {
    const uint64_t key = cell(&reverse_[slot - 1]).load(std::memory_order_relaxed);
    if (key == 0) continue;
    const uint64_t* entry = findEntry(key);
    if (entry[0] == 0 || cell(const_cast<uint64_t*>(entry) + 1).load(std::memory_order_relaxed) != slot) continue;  // an older copy
    result.push_back(WorkMapEntry{static_cast<uint32_t>(key >> 56) - 1, key & ((uint64_t(1) << 56) - 1), slot});
  }
  return result;
}

void WorkVolume::reset() noexcept {
  const Layout l = layoutFor(slotCount_, slotBytes_, disk_ != nullptr);
  // The map last: until it is cleared, the state (copying back) says nothing is diverted anyway.
  word64(header_, kTerminalOffset).store(0, std::memory_order_relaxed);
  std::memset(header_ + l.bitmap, 0, l.data - l.bitmap);
  word64(header_, kCopyCursorOffset).store(0, std::memory_order_relaxed);
  // Nothing is diverted any more: the mains are registered afresh by the next diversion.
  word32(header_, kMainCountOffset).store(0, std::memory_order_relaxed);
  word32(header_, kStateOffset).store(static_cast<uint32_t>(WorkState::Unused), std::memory_order_release);
}

}  // namespace bm
