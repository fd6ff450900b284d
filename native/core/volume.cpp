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
// The code is split by concern: this file (superblock, create/open/close, request checks,
// reads, flush, allocation map, journal attach, stats), volume_directory.cpp (the bitmap
// directory and its lock, with the notes on directory changes) and volume_write.cpp (the write
// path); volume_internal.hpp holds the little they share.
//
// Threads: one Volume object is driven by one thread at a time (the binding serializes calls);
// stats() may be read from any thread, and flush() may run on a worker while no write batch is
// in flight on the same object. Several Volume objects, in one process or many, may share a
// region: that is what the shared directory and the atomic bitmap words are for.
#include "volume.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <bit>
#include <cstring>
#include <random>

#include "byte_order.hpp"
#include "crc32c.hpp"
#include "errors.hpp"
#include "volume_internal.hpp"

namespace bm {

namespace {

using volume_internal::kGenerationByteOffset;
using volume_internal::rangeText;
using volume_internal::sharedWord;

constexpr uint64_t kVolumeMagic = 0x314D554C4F564D42ull;  // "BMVOLUM1" little endian
constexpr uint32_t kVolumeVersion = 1;
constexpr uint32_t kFlagStrict = 1;
constexpr uint64_t kStaticCrcByteOffset = 56;
constexpr uint64_t kSlotAlignmentBytes = 4096;
// 2^45 bytes (32 TiB), the same limit as Volume.MAX_CAPACITY_BYTES in TypeScript; with the
// bitmap slots the region stays far below the address space and every offset sum far from
// overflow.
constexpr uint64_t kMaxCapacityBytes = uint64_t{1} << 45;

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
