// Notes on the design
// -------------------
// RaidGroup sparing (raid_sparing.cpp): a suspect member copied onto a spare in bounded steps
// with host writes between them (raid1, raid5, single) checked against a model, the swap at the
// end (the spare is the member, parity holds, the old disk is out), a chunk the suspect cannot
// read rebuilt from parity, single with an unreadable chunk reported (never zeros), the state
// found again by open() with the spare resumed, a member failing mid-sparing cancelling it, and
// refusals (failed member, spare too small, spare already a member).
#include <cstring>
#include <random>
#include <vector>

#include "check.hpp"
#include "raid.hpp"
#include "test_support.hpp"

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

std::unique_ptr<RaidGroup> makeGroup(RaidLevel level, const std::vector<std::shared_ptr<Disk>>& disks,
                                     std::shared_ptr<bm::Region> metadata) {
  RaidOptions options;
  options.level = level;
  options.stripeUnitBytes = 8 * kKiB;
  return RaidGroup::create(metadata, disks, options);
}

void randomWrites(RaidGroup& group, std::vector<uint8_t>& model, std::mt19937_64& random, int count) {
  std::vector<uint8_t> buffer(64 * kKiB);
  for (int i = 0; i < count; i++) {
    const uint64_t length = (1 + random() % 16) * 512;
    const uint64_t offset = (random() % ((group.capacityBytes() - length) / 512)) * 512;
    for (uint64_t b = 0; b < length; b++) buffer[b] = static_cast<uint8_t>(random());
    group.write(offset, buffer.data(), length);
    std::memcpy(model.data() + offset, buffer.data(), length);
  }
}

bool matches(RaidGroup& group, const std::vector<uint8_t>& model) {
  std::vector<uint8_t> bytes(model.size());
  group.read(0, bytes.data(), bytes.size());
  return bytes == model;
}

void spareWhileWriting(RaidLevel level, size_t count) {
  auto random = bmtest::seededRandom("sparing");
  std::vector<std::shared_ptr<Disk>> disks;
  for (size_t i = 0; i < count; i++) disks.push_back(makeDisk(128 * kKiB));
  auto group = makeGroup(level, disks, bmtest::anonymousRegion(RaidGroup::kMetadataBytes));
  std::vector<uint8_t> model(group->capacityBytes(), 0);
  randomWrites(*group, model, random, 100);
  const uint32_t member = static_cast<uint32_t>(count - 1);
  auto spare = makeDisk(128 * kKiB);
  group->startSparing(member, spare);
  CHECK_EQ(group->sparing().member, member);
  CHECK(group->sparing().attached);
  uint64_t steps = 0;
  while (group->sparingStep(16 * kKiB) > 0) {
    steps++;
    randomWrites(*group, model, random, 10);
    CHECK(matches(*group, model));
  }
  CHECK_EQ(steps, level == RaidLevel::Raid5 ? 8u : 2u);  // raid5: 16 KiB steps; mirrors copy 64 KiB chunks
  CHECK_EQ(group->sparing().member, UINT32_MAX);
  CHECK(group->disk(member) == spare);
  CHECK_EQ(group->member(member).diskId, spare->diskId());
  CHECK(group->member(member).state == MemberState::Active);
  // The old disk is out of the group: failing it changes nothing.
  disks[member]->fail();
  randomWrites(*group, model, random, 50);
  CHECK(matches(*group, model));
  CHECK(group->member(member).state == MemberState::Active);
}

}  // namespace

TEST(sparing_raid5_copies_under_writes_and_swaps) { spareWhileWriting(RaidLevel::Raid5, 4); }
TEST(sparing_raid1_copies_under_writes_and_swaps) { spareWhileWriting(RaidLevel::Raid1, 2); }
TEST(sparing_single_copies_under_writes_and_swaps) { spareWhileWriting(RaidLevel::Single, 1); }

TEST(sparing_rebuilds_unreadable_chunks_from_parity_and_reports_single_loss) {
  auto random = bmtest::seededRandom("sparing_faults");
  std::vector<std::shared_ptr<Disk>> disks;
  for (int i = 0; i < 3; i++) disks.push_back(makeDisk(64 * kKiB));
  auto group = makeGroup(RaidLevel::Raid5, disks, bmtest::anonymousRegion(RaidGroup::kMetadataBytes));
  std::vector<uint8_t> model(group->capacityBytes(), 0);
  randomWrites(*group, model, random, 80);
  bm::DiskFault fault;
  fault.operations = bm::kDiskRead;
  fault.byteOffset = 16 * kKiB;
  fault.byteLength = 8 * kKiB;
  disks[1]->addFault(fault);
  auto spare = makeDisk(64 * kKiB);
  group->startSparing(1, spare);
  while (group->sparingStep(64 * kKiB) > 0) {
  }
  CHECK(group->disk(1) == spare);
  CHECK(matches(*group, model));
  CHECK(group->stats().degradedReadCount > 0);

  // Single: an unreadable chunk is data loss, reported with the cursor kept.
  auto lone = makeDisk(64 * kKiB);
  auto single = makeGroup(RaidLevel::Single, {lone}, bmtest::anonymousRegion(RaidGroup::kMetadataBytes));
  lone->addFault(fault);
  single->startSparing(0, makeDisk(64 * kKiB));
  CHECK_THROWS_CODE(single->sparingStep(64 * kKiB), ERR_RAID_READ_FAILED);
  CHECK_EQ(single->sparing().cursorBytes, 0u);  // a single group copies 64 KiB chunks: the first holds the fault
  CHECK(single->stats().dataLostCount > 0);
}

TEST(sparing_state_survives_reopen_and_member_failure_cancels) {
  auto random = bmtest::seededRandom("sparing_reopen");
  std::vector<std::shared_ptr<Disk>> disks;
  for (int i = 0; i < 3; i++) disks.push_back(makeDisk(64 * kKiB));
  auto metadata = bmtest::anonymousRegion(RaidGroup::kMetadataBytes);
  auto group = makeGroup(RaidLevel::Raid5, disks, metadata);
  std::vector<uint8_t> model(group->capacityBytes(), 0);
  randomWrites(*group, model, random, 50);
  auto spare = makeDisk(64 * kKiB);
  group->startSparing(0, spare);
  CHECK(group->sparingStep(16 * kKiB) == 16 * kKiB);
  group->close();
  // A restart: the metadata says where the sparing stood; the spare must be given back.
  auto again = RaidGroup::open(metadata, disks);
  CHECK_EQ(again->sparing().member, 0u);
  CHECK_EQ(again->sparing().cursorBytes, 16 * kKiB);
  CHECK(!again->sparing().attached);
  CHECK_THROWS_CODE(again->sparingStep(16 * kKiB), ERR_RAID_MEMBER_STATE);
  CHECK_THROWS_CODE(again->resumeSparing(makeDisk(64 * kKiB)), ERR_RAID_BAD_HEADER);
  again->resumeSparing(spare);
  randomWrites(*again, model, random, 20);
  while (again->sparingStep(16 * kKiB) > 0) randomWrites(*again, model, random, 5);
  CHECK(again->disk(0) == spare);
  CHECK(matches(*again, model));
  again->close();
  // Reopened with the spare in member 0's place.
  auto third = RaidGroup::open(metadata, {spare, disks[1], disks[2]});
  CHECK(matches(*third, model));

  // A member failing during its sparing cancels it (a rebuild takes over).
  auto other = makeDisk(64 * kKiB);
  third->startSparing(1, other);
  third->sparingStep(8 * kKiB);
  third->failMember(1);
  CHECK_THROWS_CODE(third->sparingStep(8 * kKiB), ERR_RAID_MEMBER_STATE);
  CHECK_EQ(third->sparing().member, UINT32_MAX);
  third->startRebuild(1, other);
  while (third->rebuildStep(64 * kKiB) > 0) {
  }
  CHECK(matches(*third, model));
}

TEST(sparing_refusals) {
  std::vector<std::shared_ptr<Disk>> disks;
  for (int i = 0; i < 3; i++) disks.push_back(makeDisk(64 * kKiB));
  auto group = makeGroup(RaidLevel::Raid5, disks, bmtest::anonymousRegion(RaidGroup::kMetadataBytes));
  CHECK_THROWS_AS(group->startSparing(0, makeDisk(32 * kKiB)), bm::RangeError);
  CHECK_THROWS_AS(group->startSparing(0, disks[1]), bm::RangeError);
  group->failMember(2);
  CHECK_THROWS_CODE(group->startSparing(2, makeDisk(64 * kKiB)), ERR_RAID_MEMBER_STATE);
  CHECK_EQ(group->sparingStep(1), 0u);
  auto spare = makeDisk(64 * kKiB);
  group->startRebuild(2, spare);
  CHECK_THROWS_CODE(group->startSparing(0, makeDisk(64 * kKiB)), ERR_RAID_MEMBER_STATE);
}

int main(int argc, char** argv) { return bmtest::runAll(argc, argv); }
