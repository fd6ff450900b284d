#include "disk.hpp"

#include <sys/random.h>
#include <time.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <random>
#include <string>

#include "byte_order.hpp"
#include "errors.hpp"

namespace bm {

namespace {

constexpr char kMagic[8] = {'B', 'M', 'D', 'I', 'S', 'K', '0', '1'};
constexpr uint32_t kVersion = 1;

// Static geometry.
constexpr uint64_t kVersionOffset = 8;
constexpr uint64_t kSectorSizeOffset = 12;
constexpr uint64_t kCapacityOffset = 16;
constexpr uint64_t kDiskIdOffset = 24;
// Live words.
constexpr uint64_t kStatusOffset = 64;
constexpr uint64_t kErrorCountOffset = 72;
constexpr uint64_t kErrorThresholdOffset = 80;
constexpr uint64_t kRandomStateOffset = 88;
constexpr uint64_t kReadCountOffset = 96;
constexpr uint64_t kReadBytesOffset = 104;
constexpr uint64_t kWriteCountOffset = 112;
constexpr uint64_t kWriteBytesOffset = 120;
constexpr uint64_t kReadErrorCountOffset = 128;
constexpr uint64_t kWriteErrorCountOffset = 136;
constexpr uint64_t kDelayedCountOffset = 144;
// Fault rules: kMaxFaults entries of kFaultBytes.
constexpr uint64_t kFaultTableOffset = 256;
constexpr uint64_t kFaultBytes = 64;
constexpr uint64_t kFaultActive = 0;
constexpr uint64_t kFaultOperations = 4;
constexpr uint64_t kFaultErrno = 8;
constexpr uint64_t kFaultLatency = 12;
constexpr uint64_t kFaultByteOffset = 16;
constexpr uint64_t kFaultByteLength = 24;
constexpr uint64_t kFaultAfter = 32;
constexpr uint64_t kFaultMatched = 40;
constexpr uint64_t kFaultFired = 48;
constexpr uint64_t kFaultRate = 56;

static_assert(kFaultTableOffset + Disk::kMaxFaults * kFaultBytes <= Disk::kHeaderBytes);

std::atomic_ref<uint32_t> word32(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + byteOffset));
}

std::atomic_ref<uint64_t> word64(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + byteOffset));
}

uint32_t load32(uint8_t* base, uint64_t byteOffset) noexcept {
  return word32(base, byteOffset).load(std::memory_order_relaxed);
}

uint64_t load64(uint8_t* base, uint64_t byteOffset) noexcept {
  return word64(base, byteOffset).load(std::memory_order_relaxed);
}

void store32(uint8_t* base, uint64_t byteOffset, uint32_t value) noexcept {
  word32(base, byteOffset).store(value, std::memory_order_relaxed);
}

void store64(uint8_t* base, uint64_t byteOffset, uint64_t value) noexcept {
  word64(base, byteOffset).store(value, std::memory_order_relaxed);
}

// One I/O thread per disk object (the design note): counters are relaxed load + store.
void add64(uint8_t* base, uint64_t byteOffset, uint64_t value) noexcept {
  auto word = word64(base, byteOffset);
  word.store(word.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
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

bool validStatus(uint32_t status) noexcept { return status <= static_cast<uint32_t>(DiskStatus::Sparing); }

void sleepMicroseconds(uint32_t latencyUs) noexcept {
  timespec remaining{static_cast<time_t>(latencyUs / 1000000), static_cast<long>(latencyUs % 1000000) * 1000};
  while (nanosleep(&remaining, &remaining) != 0 && errno == EINTR) {
  }
}

}  // namespace

uint64_t Disk::regionBytesFor(uint64_t capacityBytes) noexcept { return kHeaderBytes + capacityBytes; }

std::unique_ptr<Disk> Disk::create(std::shared_ptr<Region> region, const DiskOptions& options) {
  if (!region || region->closed()) throw Error(Code::ERR_REGION_CLOSED, "disk region is closed");
  const uint32_t sectorSize = options.sectorSize;
  if (sectorSize < kMinSectorSize || sectorSize > kMaxSectorSize || (sectorSize & (sectorSize - 1)) != 0) {
    throw RangeError("disk sectorSize must be a power of two from 512 to 65536");
  }
  if (options.capacityBytes == 0 || options.capacityBytes % sectorSize != 0) {
    throw RangeError("disk capacityBytes must be a positive multiple of its sectorSize");
  }
  if (!validStatus(static_cast<uint32_t>(options.status))) throw RangeError("disk status is not one of the five");
  if (region->byteLength() < regionBytesFor(options.capacityBytes)) {
    throw Error(Code::ERR_REGION_TOO_SMALL, "disk region is smaller than header + capacity");
  }
  std::unique_ptr<Disk> disk(new Disk());
  uint8_t* header = region->data();
  std::memset(header, 0, kHeaderBytes);
  writeLittleEndian<uint32_t>(header + kVersionOffset, kVersion);
  writeLittleEndian<uint32_t>(header + kSectorSizeOffset, sectorSize);
  writeLittleEndian<uint64_t>(header + kCapacityOffset, options.capacityBytes);
  disk->diskId_ = randomId();
  writeLittleEndian<uint64_t>(header + kDiskIdOffset, disk->diskId_);
  store32(header, kStatusOffset, static_cast<uint32_t>(options.status));
  store64(header, kErrorThresholdOffset, options.errorThreshold);
  store64(header, kRandomStateOffset, options.seed == 0 ? 1 : options.seed);
  // The magic last: a region torn during formatting does not open as a disk.
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(header, kMagic, sizeof kMagic);
  disk->region_ = std::move(region);
  disk->header_ = header;
  disk->data_ = header + kHeaderBytes;
  disk->capacityBytes_ = options.capacityBytes;
  disk->sectorSize_ = sectorSize;
  return disk;
}

std::unique_ptr<Disk> Disk::open(std::shared_ptr<Region> region) {
  if (!region || region->closed()) throw Error(Code::ERR_REGION_CLOSED, "disk region is closed");
  if (region->byteLength() < kHeaderBytes) throw Error(Code::ERR_DISK_BAD_HEADER, "region too small for a disk");
  uint8_t* header = region->data();
  if (std::memcmp(header, kMagic, sizeof kMagic) != 0) throw Error(Code::ERR_DISK_BAD_HEADER, "region is not a disk (magic)");
  if (readLittleEndian<uint32_t>(header + kVersionOffset) != kVersion) {
    throw Error(Code::ERR_DISK_BAD_HEADER, "disk format version is not 1");
  }
  const uint32_t sectorSize = readLittleEndian<uint32_t>(header + kSectorSizeOffset);
  const uint64_t capacityBytes = readLittleEndian<uint64_t>(header + kCapacityOffset);
  if (sectorSize < kMinSectorSize || sectorSize > kMaxSectorSize || (sectorSize & (sectorSize - 1)) != 0 ||
      capacityBytes == 0 || capacityBytes % sectorSize != 0 ||
      region->byteLength() < regionBytesFor(capacityBytes) || !validStatus(load32(header, kStatusOffset))) {
    throw Error(Code::ERR_DISK_BAD_HEADER, "disk header geometry is damaged");
  }
  std::unique_ptr<Disk> disk(new Disk());
  disk->region_ = std::move(region);
  disk->header_ = header;
  disk->data_ = header + kHeaderBytes;
  disk->capacityBytes_ = capacityBytes;
  disk->sectorSize_ = sectorSize;
  disk->diskId_ = readLittleEndian<uint64_t>(header + kDiskIdOffset);
  return disk;
}

Disk::~Disk() { close(); }

const std::shared_ptr<Region>& Disk::region() const {
  checkOpen();
  return region_;
}

void Disk::checkOpen() const {
  if (region_ == nullptr) throw Error(Code::ERR_DISK_CLOSED, "disk is closed");
}

void Disk::checkRange(const char* operation, uint64_t byteOffset, uint64_t byteLength) const {
  if (byteOffset > capacityBytes_ || byteLength > capacityBytes_ - byteOffset) {
    throw RangeError(std::string("disk ") + operation + " [" + std::to_string(byteOffset) + ", +" +
                     std::to_string(byteLength) + ") is outside the disk (" + std::to_string(capacityBytes_) +
                     " bytes)");
  }
}

uint32_t Disk::nextRandomMillionths() {
  // xorshift64*: small, seeded, and its state lives in the header so a run replays.
  uint64_t x = load64(header_, kRandomStateOffset);
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  store64(header_, kRandomStateOffset, x);
  return static_cast<uint32_t>(((x * 0x2545F4914F6CDD1DULL) >> 32) % 1000000);
}

int Disk::applyFaults(uint32_t operation, uint64_t byteOffset, uint64_t byteLength) {
  if (load32(header_, kStatusOffset) == static_cast<uint32_t>(DiskStatus::Failed)) return EIO;
  int failure = 0;
  uint64_t latencyUs = 0;
  for (uint32_t i = 0; i < kMaxFaults; i++) {
    uint8_t* rule = header_ + kFaultTableOffset + i * kFaultBytes;
    if (word32(rule, kFaultActive).load(std::memory_order_acquire) == 0) continue;
    if ((load32(rule, kFaultOperations) & operation) == 0) continue;
    const uint64_t ruleOffset = load64(rule, kFaultByteOffset);
    const uint64_t ruleLength = load64(rule, kFaultByteLength);
    const uint64_t ruleEnd = ruleLength == 0 ? capacityBytes_ : ruleOffset + ruleLength;
    // Overlap of [byteOffset, +byteLength) with [ruleOffset, ruleEnd); an empty I/O matches at its offset.
    const uint64_t ioEnd = byteOffset + (byteLength == 0 ? 1 : byteLength);
    if (ioEnd <= ruleOffset || byteOffset >= ruleEnd) continue;
    const uint64_t matched = load64(rule, kFaultMatched) + 1;
    store64(rule, kFaultMatched, matched);
    latencyUs += load32(rule, kFaultLatency);
    const int errnoValue = static_cast<int>(load32(rule, kFaultErrno));
    if (errnoValue == 0 || failure != 0 || matched <= load64(rule, kFaultAfter)) continue;
    const uint32_t rate = load32(rule, kFaultRate);
    if (rate >= 1000000 || nextRandomMillionths() < rate) {
      failure = errnoValue;
      add64(rule, kFaultFired, 1);
    }
  }
  if (latencyUs > 0) {
    add64(header_, kDelayedCountOffset, 1);
    sleepMicroseconds(static_cast<uint32_t>(latencyUs > kMaxLatencyUs ? kMaxLatencyUs : latencyUs));
  }
  return failure;
}

void Disk::countError(uint32_t operation) {
  add64(header_, operation == kDiskRead ? kReadErrorCountOffset : kWriteErrorCountOffset, 1);
  const uint64_t errors = load64(header_, kErrorCountOffset) + 1;
  store64(header_, kErrorCountOffset, errors);
  const uint64_t threshold = load64(header_, kErrorThresholdOffset);
  if (threshold != 0 && errors >= threshold) {
    // Only a normal disk becomes suspect; a failed, spare or sparing one keeps its status.
    uint32_t expected = static_cast<uint32_t>(DiskStatus::Normal);
    word32(header_, kStatusOffset).compare_exchange_strong(expected, static_cast<uint32_t>(DiskStatus::Suspect));
  }
}

int Disk::read(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) {
  checkOpen();
  checkRange("read", byteOffset, byteLength);
  if (byteLength > 0 && target == nullptr) throw ArgumentError("disk read target must not be null");
  add64(header_, kReadCountOffset, 1);
  const int failure = applyFaults(kDiskRead, byteOffset, byteLength);
  if (failure != 0) {
    countError(kDiskRead);
    return failure;
  }
  if (byteLength > 0) region_->read(kHeaderBytes + byteOffset, target, byteLength);
  add64(header_, kReadBytesOffset, byteLength);
  return 0;
}

int Disk::write(uint64_t byteOffset, const uint8_t* source, uint64_t byteLength) {
  checkOpen();
  checkRange("write", byteOffset, byteLength);
  add64(header_, kWriteCountOffset, 1);
  const int failure = applyFaults(kDiskWrite, byteOffset, byteLength);
  if (failure != 0) {
    countError(kDiskWrite);
    return failure;
  }
  if (byteLength > 0) {
    if (source != nullptr) {
      std::memcpy(data_ + byteOffset, source, byteLength);
    } else {
      region_->trim(kHeaderBytes + byteOffset, byteLength);
    }
  }
  add64(header_, kWriteBytesOffset, byteLength);
  return 0;
}

uint32_t Disk::addFault(const DiskFault& fault) {
  checkOpen();
  if (fault.operations == 0 || (fault.operations & ~(kDiskRead | kDiskWrite)) != 0) {
    throw RangeError("fault operations must be read, write or both");
  }
  if (fault.errnoValue < 0 || fault.errnoValue > 4095) throw RangeError("fault errno must be 0..4095");
  if (fault.rateMillionths > 1000000) throw RangeError("fault rate must be 0..1");
  if (fault.latencyUs > kMaxLatencyUs) throw RangeError("fault latency must be at most 10 s");
  if (fault.errnoValue == 0 && fault.latencyUs == 0) throw RangeError("a fault needs an errno or a latency");
  if (fault.byteOffset >= capacityBytes_ || fault.byteLength > capacityBytes_ - fault.byteOffset) {
    throw RangeError("fault range is outside the disk");
  }
  for (uint32_t i = 0; i < kMaxFaults; i++) {
    uint8_t* rule = header_ + kFaultTableOffset + i * kFaultBytes;
    if (load32(rule, kFaultActive) != 0) continue;
    store32(rule, kFaultOperations, fault.operations);
    store32(rule, kFaultErrno, static_cast<uint32_t>(fault.errnoValue));
    store32(rule, kFaultLatency, fault.latencyUs);
    store64(rule, kFaultByteOffset, fault.byteOffset);
    store64(rule, kFaultByteLength, fault.byteLength);
    store64(rule, kFaultAfter, fault.afterCount);
    store64(rule, kFaultMatched, 0);
    store64(rule, kFaultFired, 0);
    store32(rule, kFaultRate, fault.rateMillionths);
    word32(rule, kFaultActive).store(1, std::memory_order_release);
    return i;
  }
  throw Error(Code::ERR_DISK_FAULT_LIMIT, "all " + std::to_string(kMaxFaults) + " fault rules of the disk are in use");
}

bool Disk::removeFault(uint32_t index) {
  checkOpen();
  if (index >= kMaxFaults) throw RangeError("fault index out of range");
  uint8_t* rule = header_ + kFaultTableOffset + index * kFaultBytes;
  return word32(rule, kFaultActive).exchange(0, std::memory_order_acq_rel) != 0;
}

void Disk::clearFaults() {
  checkOpen();
  for (uint32_t i = 0; i < kMaxFaults; i++) removeFault(i);
}

std::vector<DiskFaultInfo> Disk::faults() const {
  checkOpen();
  std::vector<DiskFaultInfo> result;
  for (uint32_t i = 0; i < kMaxFaults; i++) {
    uint8_t* rule = header_ + kFaultTableOffset + i * kFaultBytes;
    if (word32(rule, kFaultActive).load(std::memory_order_acquire) == 0) continue;
    DiskFaultInfo info{};
    info.index = i;
    info.fault.operations = load32(rule, kFaultOperations);
    info.fault.errnoValue = static_cast<int32_t>(load32(rule, kFaultErrno));
    info.fault.latencyUs = load32(rule, kFaultLatency);
    info.fault.byteOffset = load64(rule, kFaultByteOffset);
    info.fault.byteLength = load64(rule, kFaultByteLength);
    info.fault.afterCount = load64(rule, kFaultAfter);
    info.fault.rateMillionths = load32(rule, kFaultRate);
    info.matchedCount = load64(rule, kFaultMatched);
    info.firedCount = load64(rule, kFaultFired);
    result.push_back(info);
  }
  return result;
}

void Disk::fail() { setStatus(DiskStatus::Failed); }

void Disk::heal() {
  checkOpen();
  clearFaults();
  store64(header_, kErrorCountOffset, 0);
  const uint32_t status = load32(header_, kStatusOffset);
  if (status == static_cast<uint32_t>(DiskStatus::Failed) || status == static_cast<uint32_t>(DiskStatus::Suspect)) {
    store32(header_, kStatusOffset, static_cast<uint32_t>(DiskStatus::Normal));
  }
}

DiskStatus Disk::status() const {
  checkOpen();
  return static_cast<DiskStatus>(load32(header_, kStatusOffset));
}

void Disk::setStatus(DiskStatus status) {
  checkOpen();
  if (!validStatus(static_cast<uint32_t>(status))) throw RangeError("disk status is not one of the five");
  store32(header_, kStatusOffset, static_cast<uint32_t>(status));
}

uint64_t Disk::errorCount() const {
  checkOpen();
  return load64(header_, kErrorCountOffset);
}

uint64_t Disk::errorThreshold() const {
  checkOpen();
  return load64(header_, kErrorThresholdOffset);
}

void Disk::setErrorThreshold(uint64_t errorThreshold) {
  checkOpen();
  store64(header_, kErrorThresholdOffset, errorThreshold);
}

DiskStats Disk::stats() const {
  checkOpen();
  DiskStats stats{};
  stats.readCount = load64(header_, kReadCountOffset);
  stats.readBytes = load64(header_, kReadBytesOffset);
  stats.writeCount = load64(header_, kWriteCountOffset);
  stats.writeBytes = load64(header_, kWriteBytesOffset);
  stats.readErrorCount = load64(header_, kReadErrorCountOffset);
  stats.writeErrorCount = load64(header_, kWriteErrorCountOffset);
  stats.errorCount = load64(header_, kErrorCountOffset);
  stats.delayedCount = load64(header_, kDelayedCountOffset);
  return stats;
}

void Disk::resetStats() {
  checkOpen();
  for (uint64_t offset = kReadCountOffset; offset <= kDelayedCountOffset; offset += 8) store64(header_, offset, 0);
}

void Disk::close() noexcept {
  region_.reset();
  header_ = nullptr;
  data_ = nullptr;
}

}  // namespace bm
