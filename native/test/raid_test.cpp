// RaidGroup: the raid5 address map (rotation, every unit once), random writes/zeroes/reads of
// single, raid1 and raid5 against a model buffer with parity checked stripe by stripe, degraded
// reads and writes with a failed member, transient read faults rebuilt from parity, rebuild onto
// a spare with host writes between its steps, a second failure reported as data loss (never
// zeros), persistence of member states, wrong disks refused, and no allocation on the I/O path.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <set>
#include <vector>

#include "check.hpp"
#include "raid.hpp"
#include "test_support.hpp"

static std::atomic<uint64_t> allocationCount{0};
void* operator new(size_t byteLength) {
  allocationCount.fetch_add(1, std::memory_order_relaxed);
  if (void* pointer = std::malloc(byteLength == 0 ? 1 : byteLength)) return pointer;
  throw std::bad_alloc();
}
void operator delete(void* pointer) noexcept { std::free(pointer); }
void operator delete(void* pointer, size_t) noexcept { std::free(pointer); }

using bm::Disk;
using bm::MemberState;
using bm::RaidGroup;
using bm::RaidLevel;
using bm::RaidOptions;

namespace {

constexpr uint64_t kKiB = 1024;

std::shared_ptr<Disk> makeDisk(uint64_t capacityBytes) {
  bm::DiskOptions options;
  options.capacityBytes = capacityBytes;
  return std::shared_ptr<Disk>(Disk::create(bmtest::anonymousRegion(Disk::regionBytesFor(capacityBytes)), options));
}

std::vector<std::shared_ptr<Disk>> makeDisks(size_t count, uint64_t capacityBytes) {
  std::vector<std::shared_ptr<Disk>> disks;
  for (size_t i = 0; i < count; i++) disks.push_back(makeDisk(capacityBytes));
  return disks;
}

std::unique_ptr<RaidGroup> makeGroup(RaidLevel level, const std::vector<std::shared_ptr<Disk>>& disks,
                                     uint64_t unit = 16 * kKiB, std::shared_ptr<bm::Region> metadata = nullptr) {
  RaidOptions options;
  options.level = level;
  options.stripeUnitBytes = unit;
  if (!metadata) metadata = bmtest::anonymousRegion(RaidGroup::kMetadataBytes);
  return RaidGroup::create(metadata, disks, options);
}

// Every raid5 stripe's members XOR to zero (every member readable).
bool parityHolds(RaidGroup& group) {
  const uint64_t unit = group.stripeUnitBytes();
  std::vector<uint8_t> accumulator(unit), bytes(unit);
  for (uint64_t offset = 0; offset < group.memberBytes(); offset += unit) {
    std::fill(accumulator.begin(), accumulator.end(), 0);
    for (uint32_t m = 0; m < group.memberCount(); m++) {
      if (group.disk(m)->read(offset, bytes.data(), unit) != 0) return false;
      for (uint64_t i = 0; i < unit; i++) accumulator[i] ^= bytes[i];
    }
    for (uint64_t i = 0; i < unit; i++) {
      if (accumulator[i] != 0) return false;
    }
  }
  return true;
}

// Random writes, zeroes and reads against a model; returns false at the first mismatch.
bool randomIo(RaidGroup& group, std::vector<uint8_t>& model, std::mt19937_64& random, int operations) {
  const uint64_t capacity = group.capacityBytes();
  std::vector<uint8_t> buffer(capacity);
  for (int op = 0; op < operations; op++) {
    const uint64_t granule = random() % 4 == 0 ? 1 : 512;
    const uint64_t offset = (random() % (capacity / granule)) * granule;
    uint64_t length = (1 + random() % (random() % 3 == 0 ? capacity / granule : 40)) * granule;
    length = std::min(length, capacity - offset);
    switch (random() % 3) {
      case 0:
        for (uint64_t i = 0; i < length; i++) buffer[i] = static_cast<uint8_t>(random());
        group.write(offset, buffer.data(), length);
        std::memcpy(model.data() + offset, buffer.data(), length);
        break;
      case 1:
        group.write(offset, nullptr, length);
        std::memset(model.data() + offset, 0, length);
        break;
      default:
        group.read(offset, buffer.data(), length);
        if (std::memcmp(buffer.data(), model.data() + offset, length) != 0) return false;
    }
  }
  group.read(0, buffer.data(), capacity);
  return std::memcmp(buffer.data(), model.data(), capacity) == 0;
}

}  // namespace

TEST(raid5_map_rotates_parity_and_covers_every_unit_once) {
  auto disks = makeDisks(4, 64 * kKiB);
  auto group = makeGroup(RaidLevel::Raid5, disks, 4 * kKiB);
  CHECK_EQ(group->memberBytes(), 64 * kKiB);
  CHECK_EQ(group->capacityBytes(), 3 * 64 * kKiB);
  std::set<std::pair<uint32_t, uint64_t>> seen;
  for (uint64_t offset = 0; offset < group->capacityBytes(); offset += 4 * kKiB) {
    const auto location = group->map(offset);
    CHECK(location.member != location.parityMember);
    CHECK_EQ(location.parityMember, 3 - static_cast<uint32_t>(location.stripeIndex % 4));
    CHECK_EQ(location.diskByteOffset, location.stripeIndex * 4 * kKiB);
    CHECK(seen.insert({location.member, location.diskByteOffset}).second);
  }
  CHECK_EQ(seen.size(), 48u);  // 16 stripes x 3 data units, parity units never mapped
  const auto inside = group->map(4 * kKiB + 100);
  CHECK_EQ(inside.runBytes, 4 * kKiB - 100);
  CHECK_EQ(inside.member, 1u);  // stripe 0: parity on member 3, data units on 0, 1, 2
  CHECK_THROWS_AS(group->map(group->capacityBytes()), bm::RangeError);
}

TEST(raid_levels_match_a_model) {
  auto random = bmtest::seededRandom("raid_levels_match_a_model");
  for (RaidLevel level : {RaidLevel::Single, RaidLevel::Raid1, RaidLevel::Raid5}) {
    const size_t count = level == RaidLevel::Single ? 1 : level == RaidLevel::Raid1 ? 3 : 5;
    auto disks = makeDisks(count, 256 * kKiB);
    auto group = makeGroup(level, disks, 8 * kKiB);
    std::vector<uint8_t> model(group->capacityBytes(), 0);
    CHECK(randomIo(*group, model, random, 400));
    if (level == RaidLevel::Raid5) {
      CHECK(parityHolds(*group));
      CHECK(group->stats().fullStripeWriteCount > 0);
      CHECK(group->stats().readModifyWriteCount > 0);
    }
    if (level == RaidLevel::Raid1) {
      std::vector<uint8_t> a(group->memberBytes()), b(group->memberBytes());
      disks[0]->read(0, a.data(), a.size());
      disks[2]->read(0, b.data(), b.size());
      CHECK(a == b);
    }
  }
}

TEST(raid5_degraded_reads_writes_and_rebuild_onto_a_spare) {
  auto random = bmtest::seededRandom("raid5_degraded");
  auto disks = makeDisks(4, 128 * kKiB);
  auto group = makeGroup(RaidLevel::Raid5, disks, 8 * kKiB);
  std::vector<uint8_t> model(group->capacityBytes(), 0);
  REQUIRE(randomIo(*group, model, random, 200));
  // The disk dies: the first write that reaches it fails the member; reads come from parity.
  disks[2]->fail();
  CHECK(randomIo(*group, model, random, 300));
  CHECK(group->member(2).state == MemberState::Failed);
  CHECK(group->stats().degradedReadCount > 0);
  CHECK(group->stats().reconstructWriteCount > 0);
  // Rebuild onto a spare, with host writes between the steps.
  auto spare = makeDisk(128 * kKiB);
  group->startRebuild(2, spare);
  CHECK(group->member(2).state == MemberState::Rebuilding);
  CHECK_EQ(group->member(2).diskId, spare->diskId());
  uint64_t steps = 0;
  while (group->rebuildStep(16 * kKiB) > 0) {
    steps++;
    CHECK(randomIo(*group, model, random, 10));
  }
  CHECK_EQ(steps, 8u);
  CHECK(group->member(2).state == MemberState::Active);
  CHECK(parityHolds(*group));
  CHECK(randomIo(*group, model, random, 100));
  CHECK(group->disk(2) == spare);
}

TEST(raid5_transient_read_faults_are_rebuilt_from_parity) {
  auto random = bmtest::seededRandom("raid5_transient");
  auto disks = makeDisks(3, 128 * kKiB);
  auto group = makeGroup(RaidLevel::Raid5, disks, 4 * kKiB);
  std::vector<uint8_t> model(group->capacityBytes(), 0);
  REQUIRE(randomIo(*group, model, random, 100));
  bm::DiskFault fault;
  fault.operations = bm::kDiskRead;
  fault.rateMillionths = 300000;
  disks[1]->addFault(fault);
  CHECK(randomIo(*group, model, random, 300));
  CHECK(group->member(1).state == MemberState::Active);  // a read error does not fail a member
  CHECK(disks[1]->errorCount() > 0);
  disks[1]->clearFaults();
  CHECK(parityHolds(*group));
}

TEST(raid5_second_failure_is_reported_never_silent) {
  auto disks = makeDisks(4, 64 * kKiB);
  auto group = makeGroup(RaidLevel::Raid5, disks, 4 * kKiB);
  std::vector<uint8_t> data(group->capacityBytes(), 0x5a);
  group->write(0, data.data(), data.size());
  group->failMember(0);
  std::vector<uint8_t> back(data.size());
  group->read(0, back.data(), back.size());
  CHECK(back == data);
  // A second disk fails while the spare is being filled.
  auto spare = makeDisk(64 * kKiB);
  group->startRebuild(0, spare);
  CHECK(group->rebuildStep(8 * kKiB) == 8 * kKiB);
  disks[3]->fail();
  CHECK_THROWS_CODE(group->rebuildStep(8 * kKiB), ERR_RAID_READ_FAILED);
  CHECK(group->member(0).rebuildCursorBytes == 8 * kKiB);
  // Stripes below the cursor still read (member 0 is current there), the rest is lost and says so.
  CHECK_THROWS_CODE(group->read(0, back.data(), back.size()), ERR_RAID_READ_FAILED);
  std::vector<uint8_t> first(4 * kKiB);
  group->read(0, first.data(), first.size());  // stripe 0: data on 0, 1, 2; parity on 3
  CHECK(std::all_of(first.begin(), first.end(), [](uint8_t b) { return b == 0x5a; }));
  CHECK(group->stats().dataLostCount >= 2);
}

TEST(raid1_survives_all_but_one_mirror_and_rebuilds) {
  auto random = bmtest::seededRandom("raid1_mirrors");
  auto disks = makeDisks(3, 128 * kKiB);
  auto group = makeGroup(RaidLevel::Raid1, disks);
  std::vector<uint8_t> model(group->capacityBytes(), 0);
  REQUIRE(randomIo(*group, model, random, 100));
  disks[0]->fail();
  disks[1]->fail();
  CHECK(randomIo(*group, model, random, 200));
  CHECK_EQ(group->failedMemberCount(), 2u);
  disks[0]->heal();
  group->startRebuild(0, disks[0]);
  while (group->rebuildStep(64 * kKiB) > 0) {
  }
  disks[2]->fail();
  CHECK(randomIo(*group, model, random, 100));
  disks[0]->fail();
  std::vector<uint8_t> byte(1);
  CHECK_THROWS_CODE(group->read(0, byte.data(), 1), ERR_RAID_READ_FAILED);
  CHECK_THROWS_CODE(group->write(0, byte.data(), 1), ERR_RAID_WRITE_FAILED);
}

TEST(raid_single_reports_disk_errors) {
  auto disks = makeDisks(1, 64 * kKiB);
  auto group = makeGroup(RaidLevel::Single, disks);
  std::vector<uint8_t> bytes(512, 1);
  group->write(0, bytes.data(), 512);
  disks[0]->fail();
  CHECK_THROWS_CODE(group->read(0, bytes.data(), 512), ERR_RAID_READ_FAILED);
  CHECK_THROWS_CODE(group->write(0, bytes.data(), 512), ERR_RAID_WRITE_FAILED);
  disks[0]->heal();
  group->read(0, bytes.data(), 512);
  CHECK(bytes[0] == 1);
  CHECK_THROWS_CODE(group->startRebuild(0, makeDisk(64 * kKiB)), ERR_RAID_MEMBER_STATE);
}

TEST(raid_metadata_persists_and_refuses_wrong_disks) {
  bmtest::SharedName name("raid");
  bm::RegionOptions regionOptions;
  regionOptions.kind = bm::RegionKind::Shared;
  regionOptions.name = name.str();
  regionOptions.byteLength = RaidGroup::kMetadataBytes;
  auto disks = makeDisks(3, 64 * kKiB);
  {
    auto group = makeGroup(RaidLevel::Raid5, disks, 4 * kKiB, bm::Region::open(regionOptions));
    group->failMember(1);
  }
  regionOptions.create = false;
  regionOptions.open = true;
  auto group = RaidGroup::open(bm::Region::open(regionOptions), disks);
  CHECK(group->level() == RaidLevel::Raid5);
  CHECK(group->member(1).state == MemberState::Failed);
  CHECK_EQ(group->stripeUnitBytes(), 4 * kKiB);
  group->close();
  auto swapped = disks;
  std::swap(swapped[0], swapped[2]);
  CHECK_THROWS_CODE(RaidGroup::open(bm::Region::open(regionOptions), swapped), ERR_RAID_BAD_HEADER);
  swapped.pop_back();
  CHECK_THROWS_CODE(RaidGroup::open(bm::Region::open(regionOptions), swapped), ERR_RAID_BAD_HEADER);
  CHECK_THROWS_CODE(RaidGroup::open(bmtest::anonymousRegion(4096), disks), ERR_RAID_BAD_HEADER);
}

TEST(raid_bad_options) {
  auto disks = makeDisks(2, 64 * kKiB);
  CHECK_THROWS_AS(makeGroup(RaidLevel::Raid5, disks), bm::RangeError);
  CHECK_THROWS_AS(makeGroup(RaidLevel::Single, disks), bm::RangeError);
  auto three = makeDisks(3, 64 * kKiB);
  CHECK_THROWS_AS(makeGroup(RaidLevel::Raid5, three, 3000), bm::RangeError);
  CHECK_THROWS_AS(makeGroup(RaidLevel::Raid5, three, 256), bm::RangeError);
  CHECK_THROWS_AS(makeGroup(RaidLevel::Raid5, three, 128 * kKiB), bm::RangeError);
  three[1] = three[0];
  CHECK_THROWS_AS(makeGroup(RaidLevel::Raid1, three), bm::RangeError);
  auto group = makeGroup(RaidLevel::Raid1, disks);
  CHECK_THROWS_CODE(group->startRebuild(0, makeDisk(64 * kKiB)), ERR_RAID_MEMBER_STATE);
  group->failMember(0);
  CHECK_THROWS_AS(group->startRebuild(0, makeDisk(32 * kKiB)), bm::RangeError);
  CHECK_THROWS_AS(group->startRebuild(0, disks[1]), bm::RangeError);
  group->close();
  std::vector<uint8_t> byte(1);
  CHECK_THROWS_CODE(group->read(0, byte.data(), 1), ERR_RAID_CLOSED);
}

TEST(raid_io_path_does_not_allocate) {
  auto disks = makeDisks(4, 256 * kKiB);
  auto group = makeGroup(RaidLevel::Raid5, disks, 8 * kKiB);
  std::vector<uint8_t> buffer(64 * kKiB, 3);
  disks[1]->fail();
  const uint64_t before = allocationCount.load();
  for (uint64_t offset = 0; offset + buffer.size() <= group->capacityBytes(); offset += 12345) {
    group->write(offset, buffer.data(), buffer.size());
    group->read(offset, buffer.data(), buffer.size());
  }
  CHECK_EQ(allocationCount.load(), before);
}

int main(int argc, char** argv) { return bmtest::runAll(argc, argv); }
