// Notes on the design
// -------------------
// WorkVolume (diversion variant (b)): random writes (whole slots, partial, zeros) of two main
// volumes sharing one work volume checked against a model: reads always see the newest bytes, the
// main stores are untouched while diverting (the load is taken off the weak group), the terminal
// address is the last slot written, the map names the newest slot; the work volume filling up
// (state full: diverted blocks updated in place, others to the main store); copy-back restores
// every main store to the model and resets the tables; a reopen of the region mid-diversion (a
// SIGKILL leaves only the region) finds the maps; through a real raid5 GroupExtent + Volume; no
// allocation on the store/load path. Variant (c): a work disk (slots on a Disk) under every member
// of a raid5 group (RaidGroup::setWorkDisk): member disks untouched while diverting, random I/O
// against a model, a slot write fault falls back, no allocation, copy-back restores the members.
// Variant (a): a BackupVolume behind a raid5 volume's extent with its secondary on a raid1 group:
// the weak group untouched while diverting, the bitmap marks the blocks written, no allocation,
// copy-back restores the weak group and clears the bitmap.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <vector>

#include "check.hpp"
#include "backup_diversion.hpp"
#include "diversion.hpp"
#include "raid.hpp"
#include "test_support.hpp"
#include "volume.hpp"

static std::atomic<uint64_t> allocationCount{0};
void* operator new(size_t byteLength) {
  allocationCount.fetch_add(1, std::memory_order_relaxed);
  if (void* pointer = std::malloc(byteLength == 0 ? 1 : byteLength)) return pointer;
  throw std::bad_alloc();
}
void operator delete(void* pointer) noexcept { std::free(pointer); }
void operator delete(void* pointer, size_t) noexcept { std::free(pointer); }

using bm::WorkState;
using bm::WorkVolume;

namespace {

constexpr uint32_t kSlot = 4096;

// A main volume's group share as plain memory, counting the bytes written to it.
struct MemoryStore final : bm::MainStore {
  explicit MemoryStore(uint64_t bytes) : bytes_(bytes, 0) {}
  void storeMain(uint64_t offset, const uint8_t* data, uint64_t length) override {
    if (data == nullptr) std::memset(bytes_.data() + offset, 0, length);
    else std::memcpy(bytes_.data() + offset, data, length);
    written += length;
  }
  void loadMain(uint64_t offset, uint8_t* target, uint64_t length) override { std::memcpy(target, bytes_.data() + offset, length); }
  std::vector<uint8_t> bytes_;
  uint64_t written = 0;
};

void randomOps(WorkVolume& work, uint32_t main, MemoryStore& store, std::vector<uint8_t>& model, std::mt19937_64& random, int count) {
  std::vector<uint8_t> buffer(4 * kSlot), read(4 * kSlot);
  for (int i = 0; i < count; i++) {
    const bool whole = random() % 2 == 0;
    const uint64_t length = whole ? kSlot * (1 + random() % 3) : 512 * (1 + random() % 12);
    const uint64_t offset = whole ? kSlot * (random() % (model.size() / kSlot - 3)) : 512 * (random() % ((model.size() - length) / 512));
    switch (random() % 4) {
      case 0:
        work.store(main, offset, nullptr, length, store);
        std::memset(model.data() + offset, 0, length);
        break;
      case 1:
      case 2:
        for (uint64_t b = 0; b < length; b++) buffer[b] = static_cast<uint8_t>(random());
        work.store(main, offset, buffer.data(), length, store);
        std::memcpy(model.data() + offset, buffer.data(), length);
        break;
      default:
        work.load(main, offset, read.data(), length, store);
        CHECK(std::memcmp(read.data(), model.data() + offset, length) == 0);
    }
  }
}

bool reads(WorkVolume& work, uint32_t main, MemoryStore& store, const std::vector<uint8_t>& model) {
  std::vector<uint8_t> all(model.size());
  work.load(main, 0, all.data(), all.size(), store);
  return all == model;
}

}  // namespace

TEST(work_volume_diverts_two_mains_copies_back_and_resets) {
  auto random = bmtest::seededRandom("work_volume");
  auto region = bmtest::anonymousRegion(WorkVolume::regionBytesFor(1024, kSlot));
  auto work = WorkVolume::create(region, 1024, kSlot);
  MemoryStore a(256 * kSlot), b(256 * kSlot);
  std::vector<uint8_t> modelA(a.bytes_.size()), modelB(b.bytes_.size());
  for (auto& byte : a.bytes_) byte = static_cast<uint8_t>(random());
  modelA = a.bytes_;
  const uint32_t mainA = work->registerMain(11), mainB = work->registerMain(22);
  CHECK_EQ(work->registerMain(11), mainA);
  CHECK_EQ(work->terminal(), 0u);
  work->start();
  CHECK_THROWS_CODE(work->start(), ERR_DIVERSION_STATE);
  const std::vector<uint8_t> before = a.bytes_;
  randomOps(*work, mainA, a, modelA, random, 150);
  randomOps(*work, mainB, b, modelB, random, 150);
  CHECK(a.written == 0 && b.written == 0);  // nothing reached the weak group
  CHECK(a.bytes_ == before);
  CHECK(reads(*work, mainA, a, modelA));
  CHECK(reads(*work, mainB, b, modelB));
  const uint64_t terminal = work->terminal();
  CHECK(terminal > 0 && terminal < 2048);
  CHECK(work->slotWritten(terminal) && !work->slotWritten(terminal + 1));
  CHECK(work->state() == WorkState::Diverting);

  // A reopen of the region (a SIGKILL keeps only the region) finds the maps.
  auto again = WorkVolume::open(region);
  CHECK_EQ(again->terminal(), terminal);
  CHECK(reads(*again, mainA, a, modelA));
  CHECK(reads(*again, mainB, b, modelB));
  CHECK_EQ(again->mains().size(), 2u);

  again->beginCopyBack();
  CHECK_THROWS_CODE(again->copyBackStep(10), ERR_DIVERSION_STATE);  // no store attached
  again->attach(mainA, &a);
  again->attach(mainB, &b);
  uint64_t steps = 0;
  while (again->state() == WorkState::CopyingBack) {
    again->copyBackStep(50);
    steps++;
    // Host writes during the copy-back land on the newest bytes.
    randomOps(*again, mainA, a, modelA, random, 5);
  }
  CHECK(steps > 1);
  CHECK(a.bytes_ == modelA);
  CHECK(b.bytes_ == modelB);
  CHECK_EQ(again->terminal(), 0u);
  CHECK(!again->slotWritten(1));
  CHECK_EQ(again->lookup(mainA, 0), 0u);
  CHECK(again->stats().copiedBackSlots > 0);
}

TEST(work_volume_full_falls_back_to_the_main_store) {
  auto random = bmtest::seededRandom("work_full");
  auto work = WorkVolume::create(bmtest::anonymousRegion(WorkVolume::regionBytesFor(16, kSlot)), 16, kSlot);
  MemoryStore a(64 * kSlot);
  std::vector<uint8_t> model(a.bytes_.size(), 0);
  const uint32_t main = work->registerMain(1);
  work->start();
  randomOps(*work, main, a, model, random, 200);
  CHECK(work->state() == WorkState::Full);
  CHECK_EQ(work->terminal(), 16u);
  CHECK(a.written > 0);
  CHECK(work->stats().fallbackWrites > 0);
  CHECK(reads(*work, main, a, model));
  work->attach(main, &a);
  work->beginCopyBack();
  while (work->state() == WorkState::CopyingBack) work->copyBackStep(4);
  CHECK(a.bytes_ == model);
}

TEST(work_volume_behind_a_raid5_volume) {
  auto random = bmtest::seededRandom("work_raid5");
  std::vector<std::shared_ptr<bm::Disk>> disks;
  for (int i = 0; i < 3; i++) {
    bm::DiskOptions options;
    options.capacityBytes = 1 << 20;
    disks.push_back(std::shared_ptr<bm::Disk>(bm::Disk::create(bmtest::anonymousRegion(bm::Disk::regionBytesFor(1 << 20)), options)));
  }
  bm::RaidOptions options;
  options.level = bm::RaidLevel::Raid5;
  options.stripeUnitBytes = 16 * 1024;
  std::shared_ptr<bm::RaidGroup> group(bm::RaidGroup::create(bmtest::anonymousRegion(bm::RaidGroup::kMetadataBytes), disks, options));
  bm::VolumeOptions vo;
  vo.capacityBytes = 1 << 20;
  auto volume = bm::Volume::create(bmtest::anonymousRegion(bm::Volume::regionBytesFor(vo.capacityBytes)), vo);
  bm::GroupExtent extent(group, 0, vo.capacityBytes);
  volume->setBackingStore(&extent);
  auto work = WorkVolume::create(bmtest::anonymousRegion(WorkVolume::regionBytesFor(512, kSlot)), 512, kSlot);
  std::vector<uint8_t> model(vo.capacityBytes, 0), buffer(64 * 1024);
  auto write = [&](uint64_t offset, uint64_t length) {
    for (uint64_t i = 0; i < length; i++) buffer[i] = static_cast<uint8_t>(random());
    volume->write(offset, buffer.data(), length);
    std::memcpy(model.data() + offset, buffer.data(), length);
  };
  for (int i = 0; i < 20; i++) write(512 * (random() % 1000), 4096);
  extent.setWorkVolume(work, work->registerMain(volume->volumeId()));
  work->start();
  const uint64_t groupWrites = group->stats().writeCount;
  for (int i = 0; i < 60; i++) write(512 * (random() % 1500), 512 * (1 + random() % 16));
  CHECK_EQ(group->stats().writeCount, groupWrites);
  std::vector<uint8_t> all(model.size());
  volume->read(0, all.data(), all.size());
  CHECK(all == model);
  const uint64_t allocations = allocationCount.load();
  write(8192, 4096);
  volume->read(0, all.data(), 8192 * 2);
  CHECK_EQ(allocationCount.load(), allocations);
  work->beginCopyBack();
  while (work->state() == WorkState::CopyingBack) work->copyBackStep(32);
  extent.setWorkVolume(nullptr, 0);
  group->read(0, all.data(), all.size());
  CHECK(all == model);
  volume->setBackingStore(nullptr);
}

TEST(work_disk_under_raid5_members) {
  auto random = bmtest::seededRandom("work_disk_raid5");
  auto makeDisk = [](uint64_t bytes) {
    bm::DiskOptions options;
    options.capacityBytes = bytes;
    return std::shared_ptr<bm::Disk>(bm::Disk::create(bmtest::anonymousRegion(bm::Disk::regionBytesFor(bytes)), options));
  };
  std::vector<std::shared_ptr<bm::Disk>> disks;
  for (int i = 0; i < 4; i++) disks.push_back(makeDisk(256 * 1024));
  bm::RaidOptions options;
  options.level = bm::RaidLevel::Raid5;
  options.stripeUnitBytes = 8 * 1024;
  std::shared_ptr<bm::RaidGroup> group(bm::RaidGroup::create(bmtest::anonymousRegion(bm::RaidGroup::kMetadataBytes), disks, options));
  auto dataDisk = makeDisk(8 << 20);  // room for every diverted block: not full
  const uint64_t slots = (8 << 20) / kSlot;
  auto work = WorkVolume::create(bmtest::anonymousRegion(WorkVolume::regionBytesFor(slots, kSlot, true)), slots, kSlot, dataDisk);
  std::vector<uint8_t> model(group->capacityBytes(), 0), buffer(32 * 1024), all(model.size());
  auto write = [&](uint64_t offset, uint64_t length) {
    for (uint64_t i = 0; i < length; i++) buffer[i] = static_cast<uint8_t>(random());
    group->write(offset, buffer.data(), length);
    std::memcpy(model.data() + offset, buffer.data(), length);
  };
  auto randomWrite = [&] {
    const uint64_t length = 512 * (1 + random() % 32);
    write(512 * (random() % ((model.size() - length) / 512)), length);
  };
  for (int i = 0; i < 40; i++) randomWrite();
  group->setWorkDisk(work, {1, 2, 3, 4});
  work->start();
  uint64_t memberWrites = 0;
  for (auto& d : disks) memberWrites += d->stats().writeCount;
  for (int i = 0; i < 80; i++) randomWrite();
  uint64_t after = 0;
  for (auto& d : disks) after += d->stats().writeCount;
  CHECK(work->state() == WorkState::Diverting);
  CHECK_EQ(after, memberWrites);
  group->read(0, all.data(), all.size());
  CHECK(all == model);
  const uint64_t allocations = allocationCount.load();
  write(8192, 4096);
  group->read(0, all.data(), 16384);
  CHECK_EQ(allocationCount.load(), allocations);
  bm::DiskFault rule;
  rule.operations = bm::kDiskWrite;
  rule.errnoValue = 5;
  dataDisk->addFault(rule);
  for (int i = 0; i < 10; i++) randomWrite();
  CHECK(work->stats().slotErrors > 0);
  dataDisk->clearFaults();
  group->read(0, all.data(), all.size());
  CHECK(all == model);
  work->beginCopyBack();
  while (work->state() == WorkState::CopyingBack) work->copyBackStep(16);
  group->setWorkDisk(nullptr, {});
  group->read(0, all.data(), all.size());
  CHECK(all == model);
  CHECK(work->entries(10).empty());
}

TEST(backup_volume_behind_a_raid5_volume) {
  auto random = bmtest::seededRandom("backup_raid5");
  auto makeDisk = [](uint64_t bytes) {
    bm::DiskOptions options;
    options.capacityBytes = bytes;
    return std::shared_ptr<bm::Disk>(bm::Disk::create(bmtest::anonymousRegion(bm::Disk::regionBytesFor(bytes)), options));
  };
  std::vector<std::shared_ptr<bm::Disk>> weakDisks, secondaryDisks;
  for (int i = 0; i < 3; i++) weakDisks.push_back(makeDisk(1 << 20));
  for (int i = 0; i < 2; i++) secondaryDisks.push_back(makeDisk(1 << 20));
  bm::RaidOptions options;
  options.level = bm::RaidLevel::Raid5;
  options.stripeUnitBytes = 16 * 1024;
  std::shared_ptr<bm::RaidGroup> weak(bm::RaidGroup::create(bmtest::anonymousRegion(bm::RaidGroup::kMetadataBytes), weakDisks, options));
  options.level = bm::RaidLevel::Raid1;
  std::shared_ptr<bm::RaidGroup> secondary(bm::RaidGroup::create(bmtest::anonymousRegion(bm::RaidGroup::kMetadataBytes), secondaryDisks, options));
  bm::VolumeOptions vo;
  vo.capacityBytes = 1 << 20;
  auto volume = bm::Volume::create(bmtest::anonymousRegion(bm::Volume::regionBytesFor(vo.capacityBytes)), vo);
  bm::GroupExtent extent(weak, 0, vo.capacityBytes);
  volume->setBackingStore(&extent);
  auto backup = bm::BackupVolume::create(bmtest::anonymousRegion(bm::BackupVolume::regionBytesFor(vo.capacityBytes, kSlot)), vo.capacityBytes, kSlot);
  backup->setSecondary(std::make_shared<bm::GroupExtent>(secondary, 0, vo.capacityBytes));
  std::vector<uint8_t> model(vo.capacityBytes, 0), buffer(64 * 1024), all(model.size());
  std::vector<bool> written(vo.capacityBytes / kSlot, false);
  auto write = [&](uint64_t offset, uint64_t length, bool track) {
    for (uint64_t i = 0; i < length; i++) buffer[i] = static_cast<uint8_t>(random());
    volume->write(offset, buffer.data(), length);
    std::memcpy(model.data() + offset, buffer.data(), length);
    if (track) for (uint64_t b = offset / kSlot; b <= (offset + length - 1) / kSlot; b++) written[b] = true;
  };
  for (int i = 0; i < 20; i++) write(512 * (random() % 1500), 4096, false);
  extent.setBackup(backup);
  backup->start();
  const uint64_t weakWrites = weak->stats().writeCount;
  for (int i = 0; i < 60; i++) write(512 * (random() % 1500), 512 * (1 + random() % 16), true);
  CHECK_EQ(weak->stats().writeCount, weakWrites);
  uint64_t expected = 0;
  for (uint64_t b = 0; b < written.size(); b++) {
    CHECK_EQ(backup->diverted(b), static_cast<bool>(written[b]));
    expected += written[b] ? 1 : 0;
  }
  CHECK_EQ(backup->divertedCount(), expected);
  volume->read(0, all.data(), all.size());
  CHECK(all == model);
  const uint64_t allocations = allocationCount.load();
  write(8192, 4096, true);
  volume->read(0, all.data(), 8192 * 2);
  CHECK_EQ(allocationCount.load(), allocations);
  backup->beginCopyBack();
  while (backup->state() == WorkState::CopyingBack) backup->copyBackStep(37);
  CHECK_EQ(backup->divertedCount(), uint64_t(0));
  extent.setBackup(nullptr);
  weak->read(0, all.data(), all.size());
  CHECK(all == model);
  volume->setBackingStore(nullptr);
}

int main(int argc, char** argv) { return bmtest::runAll(argc, argv); }
