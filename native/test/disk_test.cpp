// Disk: reads back writes, fault rules by operation, range, errno, "after N" and rate (seeded, so
// two disks with one seed fail the same I/Os), latency, fail and heal, the error counter and the
// suspect threshold, persistence of faults and status in a shared region, a bad header.
#include <cerrno>
#include <chrono>
#include <cstring>
#include <vector>

#include "check.hpp"
#include "disk.hpp"
#include "test_support.hpp"

using bm::Disk;
using bm::DiskFault;
using bm::DiskOptions;
using bm::DiskStatus;

namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

std::unique_ptr<Disk> makeDisk(uint64_t capacityBytes = kMiB, uint64_t seed = 7, uint64_t threshold = 0) {
  DiskOptions options;
  options.capacityBytes = capacityBytes;
  options.seed = seed;
  options.errorThreshold = threshold;
  return Disk::create(bmtest::anonymousRegion(Disk::regionBytesFor(capacityBytes)), options);
}

std::vector<uint8_t> pattern(size_t byteLength, uint8_t salt) {
  std::vector<uint8_t> bytes(byteLength);
  for (size_t i = 0; i < byteLength; i++) bytes[i] = static_cast<uint8_t>(i * 31 + salt);
  return bytes;
}

}  // namespace

TEST(disk_reads_back_writes_and_zeros) {
  auto disk = makeDisk();
  auto data = pattern(8192, 3);
  CHECK_EQ(disk->write(4096, data.data(), data.size()), 0);
  std::vector<uint8_t> back(8192);
  CHECK_EQ(disk->read(4096, back.data(), back.size()), 0);
  CHECK(back == data);
  CHECK_EQ(disk->write(4096, nullptr, 4096), 0);
  CHECK_EQ(disk->read(4096, back.data(), back.size()), 0);
  CHECK(std::all_of(back.begin(), back.begin() + 4096, [](uint8_t b) { return b == 0; }));
  CHECK(std::equal(back.begin() + 4096, back.end(), data.begin() + 4096));
  CHECK_THROWS_AS(disk->read(kMiB - 10, back.data(), 11), bm::RangeError);
  CHECK_THROWS_AS(disk->write(kMiB + 1, data.data(), 0), bm::RangeError);
  const auto stats = disk->stats();
  CHECK_EQ(stats.writeCount, 2u);
  CHECK_EQ(stats.readCount, 2u);
  CHECK_EQ(stats.readBytes, 16384u);
}

TEST(disk_fault_by_operation_range_and_errno) {
  auto disk = makeDisk();
  DiskFault fault;
  fault.operations = bm::kDiskRead;
  fault.errnoValue = ENOSPC;
  fault.byteOffset = 64 * kKiB;
  fault.byteLength = 4096;
  CHECK_EQ(disk->addFault(fault), 0u);
  std::vector<uint8_t> buffer(4096, 1);
  CHECK_EQ(disk->write(64 * kKiB, buffer.data(), 4096), 0);         // writes pass
  CHECK_EQ(disk->read(64 * kKiB, buffer.data(), 4096), ENOSPC);     // reads in range fail
  CHECK_EQ(disk->read(64 * kKiB - 4096, buffer.data(), 4097), ENOSPC);  // overlap of one byte
  CHECK_EQ(disk->read(64 * kKiB - 4096, buffer.data(), 4096), 0);   // touching is not overlapping
  CHECK_EQ(disk->read(68 * kKiB, buffer.data(), 4096), 0);
  CHECK_EQ(disk->errorCount(), 2u);
  CHECK_EQ(disk->stats().readErrorCount, 2u);
  const auto faults = disk->faults();
  REQUIRE(faults.size() == 1);
  CHECK_EQ(faults[0].matchedCount, 2u);
  CHECK_EQ(faults[0].firedCount, 2u);
  CHECK(disk->removeFault(0));
  CHECK(!disk->removeFault(0));
  CHECK_EQ(disk->read(64 * kKiB, buffer.data(), 4096), 0);
}

TEST(disk_fault_after_n_ios) {
  auto disk = makeDisk();
  DiskFault fault;
  fault.operations = bm::kDiskWrite;
  fault.afterCount = 3;
  disk->addFault(fault);
  std::vector<uint8_t> buffer(512, 9);
  for (int i = 0; i < 3; i++) CHECK_EQ(disk->write(0, buffer.data(), 512), 0);
  CHECK_EQ(disk->write(0, buffer.data(), 512), EIO);
  CHECK_EQ(disk->write(0, buffer.data(), 512), EIO);
}

TEST(disk_fault_rate_is_seeded) {
  auto first = makeDisk(kMiB, 1234);
  auto second = makeDisk(kMiB, 1234);
  auto other = makeDisk(kMiB, 99);
  DiskFault fault;
  fault.rateMillionths = 250000;
  first->addFault(fault);
  second->addFault(fault);
  other->addFault(fault);
  std::vector<uint8_t> buffer(512);
  int failures = 0;
  bool sameAsSecond = true;
  bool sameAsOther = true;
  for (int i = 0; i < 4000; i++) {
    const int a = first->read(0, buffer.data(), 512);
    const int b = second->read(0, buffer.data(), 512);
    const int c = other->read(0, buffer.data(), 512);
    failures += a != 0;
    sameAsSecond = sameAsSecond && a == b;
    sameAsOther = sameAsOther && a == c;
  }
  CHECK(sameAsSecond);
  CHECK(!sameAsOther);
  // 1000 expected; the binomial spread is about 27.
  CHECK(failures > 850 && failures < 1150);
}

TEST(disk_latency_delays_without_failing) {
  auto disk = makeDisk();
  DiskFault fault;
  fault.errnoValue = 0;
  fault.latencyUs = 20000;
  disk->addFault(fault);
  std::vector<uint8_t> buffer(512);
  const auto start = std::chrono::steady_clock::now();
  CHECK_EQ(disk->read(0, buffer.data(), 512), 0);
  const auto elapsed = std::chrono::steady_clock::now() - start;
  CHECK(elapsed >= std::chrono::milliseconds(19));
  CHECK_EQ(disk->stats().delayedCount, 1u);
  CHECK_EQ(disk->errorCount(), 0u);
}

TEST(disk_fail_and_heal_keep_data) {
  auto disk = makeDisk();
  auto data = pattern(4096, 5);
  CHECK_EQ(disk->write(0, data.data(), 4096), 0);
  disk->fail();
  CHECK(disk->status() == DiskStatus::Failed);
  std::vector<uint8_t> back(4096);
  CHECK_EQ(disk->read(0, back.data(), 4096), EIO);
  CHECK_EQ(disk->write(0, back.data(), 4096), EIO);
  disk->heal();
  CHECK(disk->status() == DiskStatus::Normal);
  CHECK_EQ(disk->errorCount(), 0u);
  CHECK_EQ(disk->read(0, back.data(), 4096), 0);
  CHECK(back == data);
}

TEST(disk_error_threshold_makes_it_suspect) {
  auto disk = makeDisk(kMiB, 1, 3);
  DiskFault fault;
  fault.operations = bm::kDiskRead;
  disk->addFault(fault);
  std::vector<uint8_t> buffer(512);
  disk->read(0, buffer.data(), 512);
  disk->read(0, buffer.data(), 512);
  CHECK(disk->status() == DiskStatus::Normal);
  disk->read(0, buffer.data(), 512);
  CHECK(disk->status() == DiskStatus::Suspect);
  // A spare never turns suspect.
  disk->heal();
  disk->setStatus(DiskStatus::Spare);
  disk->addFault(fault);
  for (int i = 0; i < 5; i++) disk->read(0, buffer.data(), 512);
  CHECK(disk->status() == DiskStatus::Spare);
}

TEST(disk_bad_fault_rules_and_limit) {
  auto disk = makeDisk();
  DiskFault fault;
  fault.operations = 0;
  CHECK_THROWS_AS(disk->addFault(fault), bm::RangeError);
  fault = DiskFault{};
  fault.rateMillionths = 1000001;
  CHECK_THROWS_AS(disk->addFault(fault), bm::RangeError);
  fault = DiskFault{};
  fault.byteOffset = kMiB;
  CHECK_THROWS_AS(disk->addFault(fault), bm::RangeError);
  fault = DiskFault{};
  fault.errnoValue = 0;
  CHECK_THROWS_AS(disk->addFault(fault), bm::RangeError);
  fault = DiskFault{};
  for (uint32_t i = 0; i < Disk::kMaxFaults; i++) CHECK_EQ(disk->addFault(fault), i);
  CHECK_THROWS_CODE(disk->addFault(fault), ERR_DISK_FAULT_LIMIT);
  disk->clearFaults();
  CHECK(disk->faults().empty());
}

TEST(disk_shared_region_keeps_status_faults_and_data) {
  bmtest::SharedName name("disk");
  bm::RegionOptions regionOptions;
  regionOptions.kind = bm::RegionKind::Shared;
  regionOptions.name = name.str();
  regionOptions.byteLength = Disk::regionBytesFor(kMiB);
  auto data = pattern(4096, 11);
  uint64_t diskId = 0;
  {
    DiskOptions options;
    options.capacityBytes = kMiB;
    options.sectorSize = 4096;
    auto disk = Disk::create(bm::Region::open(regionOptions), options);
    diskId = disk->diskId();
    CHECK_EQ(disk->write(8192, data.data(), 4096), 0);
    DiskFault fault;
    fault.operations = bm::kDiskWrite;
    fault.errnoValue = EROFS;
    disk->addFault(fault);
    disk->setStatus(DiskStatus::Sparing);
  }
  regionOptions.create = false;
  regionOptions.open = true;
  auto disk = Disk::open(bm::Region::open(regionOptions));
  CHECK_EQ(disk->diskId(), diskId);
  CHECK_EQ(disk->sectorSize(), 4096u);
  CHECK(disk->status() == DiskStatus::Sparing);
  std::vector<uint8_t> back(4096);
  CHECK_EQ(disk->read(8192, back.data(), 4096), 0);
  CHECK(back == data);
  CHECK_EQ(disk->write(0, back.data(), 4096), EROFS);
  disk->close();
  CHECK_THROWS_CODE(disk->read(0, back.data(), 1), ERR_DISK_CLOSED);
}

TEST(disk_bad_header_and_options) {
  auto region = bmtest::anonymousRegion(Disk::regionBytesFor(kMiB));
  CHECK_THROWS_CODE(Disk::open(region), ERR_DISK_BAD_HEADER);
  DiskOptions options;
  options.capacityBytes = 1000;
  CHECK_THROWS_AS(Disk::create(region, options), bm::RangeError);
  options.capacityBytes = kMiB;
  options.sectorSize = 1000;
  CHECK_THROWS_AS(Disk::create(region, options), bm::RangeError);
  options.sectorSize = 512;
  options.capacityBytes = 2 * kMiB;
  CHECK_THROWS_CODE(Disk::create(region, options), ERR_REGION_TOO_SMALL);
}

int main(int argc, char** argv) { return bmtest::runAll(argc, argv); }
