// SnapshotStore: instant creation, copy-on-write on the first change of a chunk only, one copy
// shared by every snapshot that needs it, reads against a model of the volume at each snapshot's
// creation, deletes that return memory, overflow that invalidates instead of failing the host
// write, restore, holes, the "needs interceptor" word, recovery after a dead lock holder,
// persistence of a shared store, and no allocation on the write path.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <map>
#include <new>
#include <vector>

#include "check.hpp"
#include "snapshot.hpp"
#include "test_support.hpp"
#include "volume.hpp"

// Counts heap allocations, to prove the write path makes none.
static std::atomic<uint64_t> allocationCount{0};
void* operator new(size_t byteLength) {
  allocationCount.fetch_add(1, std::memory_order_relaxed);
  if (void* pointer = std::malloc(byteLength == 0 ? 1 : byteLength)) return pointer;
  throw std::bad_alloc();
}
void operator delete(void* pointer) noexcept { std::free(pointer); }
void operator delete(void* pointer, size_t) noexcept { std::free(pointer); }

using bm::SnapshotInfo;
using bm::SnapshotState;
using bm::SnapshotStore;
using bm::SnapshotStoreOptions;
using bm::Volume;

namespace {

constexpr uint64_t kKiB = 1024;
constexpr uint64_t kMiB = 1024 * kKiB;

std::shared_ptr<Volume> makeVolume(uint64_t capacityBytes, uint32_t blockSize = 4096) {
  auto region = bmtest::anonymousRegion(Volume::regionBytesFor(capacityBytes));
  bm::VolumeOptions options;
  options.capacityBytes = capacityBytes;
  options.blockSize = blockSize;
  return Volume::create(region, options);
}

std::unique_ptr<SnapshotStore> makeStore(const std::shared_ptr<Volume>& volume,
                                         uint64_t chunkBytes = 64 * kKiB, uint64_t storeBytes = 0) {
  SnapshotStoreOptions options;
  options.chunkBytes = chunkBytes;
  options.storeBytes = storeBytes;
  auto region = bmtest::anonymousRegion(SnapshotStore::regionBytesFor(volume->capacityBytes(), options));
  return SnapshotStore::create(region, volume, options);
}

std::vector<uint8_t> readVolume(Volume& volume) {
  std::vector<uint8_t> bytes(volume.capacityBytes());
  volume.read(0, bytes.data(), bytes.size());
  return bytes;
}

std::vector<uint8_t> readSnapshot(const SnapshotStore& store, const SnapshotInfo& snapshot) {
  std::vector<uint8_t> bytes(store.capacityBytes());
  store.read(snapshot.slot, snapshot.id, 0, bytes.data(), bytes.size());
  return bytes;
}

void fill(std::vector<uint8_t>& bytes, uint64_t seed) {
  uint64_t x = seed * 0x9E3779B97F4A7C15ull + 1;
  for (auto& byte : bytes) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    byte = static_cast<uint8_t>(x);
  }
}

}  // namespace

TEST(snapshot_create_is_instant_and_reads_the_volume_as_it_was) {
  auto volume = makeVolume(kMiB);
  auto store = makeStore(volume);
  std::vector<uint8_t> before(kMiB);
  fill(before, 1);
  volume->write(0, before.data(), kMiB);
  const SnapshotInfo snapshot = store->createSnapshot("nightly");
  CHECK(snapshot.id != 0);
  CHECK_EQ(snapshot.name, std::string("nightly"));
  CHECK(snapshot.state == SnapshotState::Valid);
  CHECK_EQ(store->stats().preserveCount, 0u);
  CHECK_EQ(store->stats().storeChunksUsed, 0u);
  CHECK(readSnapshot(*store, snapshot) == before);

  std::vector<uint8_t> after(3 * 4096);
  fill(after, 2);
  volume->write(70 * kKiB, after.data(), after.size());  // inside chunk 1
  CHECK_EQ(store->stats().preserveCount, 1u);
  CHECK_EQ(store->stats().preserveBytes, 64 * kKiB);
  CHECK(readSnapshot(*store, snapshot) == before);
  std::vector<uint8_t> live = before;
  std::memcpy(live.data() + 70 * kKiB, after.data(), after.size());
  CHECK(readVolume(*volume) == live);

  // A later change of the same chunk copies nothing; a write across two chunks copies both once.
  volume->write(64 * kKiB, after.data(), 4096);
  CHECK_EQ(store->stats().preserveCount, 1u);
  volume->write(60 * kKiB, after.data(), 8 * kKiB);  // chunks 0 and 1
  CHECK_EQ(store->stats().preserveCount, 2u);
  CHECK(readSnapshot(*store, snapshot) == before);
  CHECK_EQ(store->find("nightly").preservedChunkCount, 2u);
}

TEST(snapshot_one_copy_serves_every_snapshot_that_needs_it) {
  auto volume = makeVolume(kMiB);
  auto store = makeStore(volume);
  std::vector<uint8_t> data(kMiB);
  fill(data, 3);
  volume->write(0, data.data(), kMiB);
  std::vector<SnapshotInfo> snapshots;
  for (int i = 0; i < 8; i++) snapshots.push_back(store->createSnapshot("s" + std::to_string(i)));
  std::vector<uint8_t> block(4096, 0x77);
  volume->write(0, block.data(), block.size());
  auto stats = store->stats();
  CHECK_EQ(stats.preserveCount, 1u);
  CHECK_EQ(stats.sharedCount, 7u);
  CHECK_EQ(stats.storeChunksUsed, 1u);
  for (const auto& snapshot : snapshots) CHECK(readSnapshot(*store, snapshot) == data);

  // A snapshot taken now needs the new bytes of chunk 0: a second copy, for it alone.
  const std::vector<uint8_t> middle = readVolume(*volume);
  const SnapshotInfo late = store->createSnapshot("late");
  volume->write(4096, block.data(), block.size());
  stats = store->stats();
  CHECK_EQ(stats.preserveCount, 2u);
  CHECK_EQ(stats.sharedCount, 7u);
  CHECK(readSnapshot(*store, late) == middle);
  for (const auto& snapshot : snapshots) CHECK(readSnapshot(*store, snapshot) == data);

  // Deleting seven of the eight keeps the shared chunk; deleting the eighth frees it.
  for (int i = 0; i < 7; i++) store->deleteSnapshot("s" + std::to_string(i));
  CHECK_EQ(store->stats().storeChunksUsed, 2u);
  CHECK(readSnapshot(*store, snapshots[7]) == data);
  store->deleteSnapshot("s7");
  CHECK_EQ(store->stats().storeChunksUsed, 1u);
  CHECK(readSnapshot(*store, late) == middle);
}

TEST(snapshot_random_operations_match_a_model) {
  auto random = bmtest::seededRandom("snapshot-model");
  for (uint64_t chunkBytes : {4 * kKiB, 16 * kKiB, 64 * kKiB}) {
    const uint64_t capacityBytes = kMiB + 12 * kKiB;  // the last chunk is partial for 16 and 64 KiB
    auto volume = makeVolume(capacityBytes);
    auto store = makeStore(volume, chunkBytes, 16 * capacityBytes);
    std::vector<uint8_t> live(capacityBytes, 0);
    std::map<std::string, std::pair<SnapshotInfo, std::vector<uint8_t>>> model;
    std::vector<uint8_t> buffer(200 * kKiB);
    int nameCounter = 0;
    uint64_t overflowed = 0;
    for (int step = 0; step < 1500; step++) {
      const uint64_t choice = random() % 100;
      const uint64_t byteLength = random() % 4 == 0 ? random() % (200 * kKiB) : random() % 9000;
      const uint64_t byteOffset = random() % (capacityBytes - byteLength + 1);
      if (choice < 45) {
        fill(buffer, random());
        volume->write(byteOffset, buffer.data(), byteLength);
        std::memcpy(live.data() + byteOffset, buffer.data(), byteLength);
      } else if (choice < 55) {
        volume->writeZeroes(byteOffset, byteLength, random() % 2 == 0);
        std::memset(live.data() + byteOffset, 0, byteLength);
      } else if (choice < 62) {
        volume->trim(byteOffset, byteLength);
        std::memset(live.data() + byteOffset, 0, byteLength);
      } else if (choice < 72) {
        if (model.size() < SnapshotStore::kMaxSnapshots) {
          const std::string name = "m" + std::to_string(nameCounter++);
          model[name] = {store->createSnapshot(name), live};
        }
      } else if (choice < 80) {
        if (!model.empty()) {
          auto it = std::next(model.begin(), static_cast<long>(random() % model.size()));
          store->deleteSnapshot(it->first);
          model.erase(it);
        }
      } else if (!model.empty()) {
        auto it = std::next(model.begin(), static_cast<long>(random() % model.size()));
        if (store->find(it->first).state == SnapshotState::Invalid) {
          // The store overflowed for it (a store of 16 volumes is not always enough for 32 snapshots and restores): reads say so.
          std::vector<uint8_t> got(16);
          CHECK_THROWS_CODE(store->read(it->second.first.slot, it->second.first.id, 0, got.data(), 16),
                            ERR_SNAPSHOT_INVALID);
          store->deleteSnapshot(it->first);
          model.erase(it);
          overflowed++;
        } else if (choice < 84) {
          store->restore(it->second.first.slot, it->second.first.id);
          live = it->second.second;
        } else {
          // One byte more than read: a zero-length read still has a buffer (memcmp of null is UB).
          std::vector<uint8_t> got(byteLength + 1);
          store->read(it->second.first.slot, it->second.first.id, byteOffset, got.data(), byteLength);
          CHECK(std::memcmp(got.data(), it->second.second.data() + byteOffset, byteLength) == 0);
        }
      }
    }
    CHECK(readVolume(*volume) == live);
    for (auto it = model.begin(); it != model.end();) {
      if (store->find(it->first).state == SnapshotState::Invalid) {
        store->deleteSnapshot(it->first);
        it = model.erase(it);
        overflowed++;
      } else {
        CHECK(readSnapshot(*store, it->second.first) == it->second.second);
        ++it;
      }
    }
    CHECK(overflowed <= store->stats().overflowCount);
    // Deleting everything returns every store chunk.
    for (const auto& [name, entry] : model) store->deleteSnapshot(name);
    CHECK_EQ(store->stats().storeChunksUsed, 0u);
  }
}

TEST(snapshot_restore_brings_the_volume_back_and_other_snapshots_stay_correct) {
  auto volume = makeVolume(kMiB);
  auto store = makeStore(volume, 16 * kKiB);
  auto dirty = volume->createBitmap("dirty", 64 * kKiB, true);
  std::vector<uint8_t> first(kMiB);
  fill(first, 10);
  volume->write(0, first.data(), kMiB);
  const SnapshotInfo a = store->createSnapshot("a");
  std::vector<uint8_t> piece(40 * kKiB);
  fill(piece, 11);
  volume->write(100 * kKiB, piece.data(), piece.size());
  const std::vector<uint8_t> second = readVolume(*volume);
  const SnapshotInfo b = store->createSnapshot("b");
  volume->write(500 * kKiB, piece.data(), piece.size());
  dirty->clearAll();

  const uint64_t restoredBytes = store->restore(a.slot, a.id);
  CHECK_EQ(restoredBytes, 96 * kKiB);  // the chunks a preserved: [96, 144) and [496, 544) KiB
  CHECK(readVolume(*volume) == first);
  CHECK(readSnapshot(*store, a) == first);
  CHECK(readSnapshot(*store, b) == second);
  CHECK(dirty->count() > 0);  // the restore went through the write path
  // Restoring b afterwards gives b's content.
  store->restore(b.slot, b.id);
  CHECK(readVolume(*volume) == second);
  CHECK(readSnapshot(*store, a) == first);
}

TEST(snapshot_holes_are_preserved_without_a_store_chunk_and_show_in_the_allocation_map) {
  auto volume = makeVolume(kMiB);
  auto store = makeStore(volume);
  std::vector<uint8_t> data(64 * kKiB, 0x5A);
  volume->write(128 * kKiB, data.data(), data.size());  // chunk 2 only
  const SnapshotInfo snapshot = store->createSnapshot("holes");
  volume->write(0, data.data(), data.size());         // chunk 0 was a hole
  volume->write(128 * kKiB, data.data(), 4096);        // chunk 2 had data
  const auto stats = store->stats();
  CHECK_EQ(stats.zeroChunkCount, 1u);
  CHECK_EQ(stats.preserveCount, 1u);
  CHECK_EQ(stats.storeChunksUsed, 1u);
  std::vector<uint8_t> expected(kMiB, 0);
  std::memset(expected.data() + 128 * kKiB, 0x5A, 64 * kKiB);
  CHECK(readSnapshot(*store, snapshot) == expected);
  const auto extents = store->allocationMap(snapshot.slot, snapshot.id, 0, kMiB);
  REQUIRE_EQ(extents.size(), 3u);
  CHECK(!extents[0].allocated);
  CHECK_EQ(extents[0].byteLength, 128 * kKiB);
  CHECK(extents[1].allocated);
  CHECK_EQ(extents[1].byteOffset, 128 * kKiB);
  CHECK_EQ(extents[1].byteLength, 64 * kKiB);
  CHECK(!extents[2].allocated);
  CHECK_EQ(extents[2].byteOffset + extents[2].byteLength, kMiB);
  // The volume's own map now has chunk 0 allocated; the snapshot's does not.
  CHECK(volume->allocationMap(0, 4096)[0].allocated);
}

TEST(snapshot_a_full_store_invalidates_instead_of_failing_the_write) {
  auto volume = makeVolume(kMiB);
  auto store = makeStore(volume, 64 * kKiB, 128 * kKiB);  // two store chunks
  std::vector<uint8_t> data(kMiB);
  fill(data, 20);
  volume->write(0, data.data(), kMiB);
  const SnapshotInfo small = store->createSnapshot("small");
  std::vector<uint8_t> block(4096, 1);
  volume->write(0, block.data(), 4096);
  volume->write(64 * kKiB, block.data(), 4096);
  CHECK(store->find("small").state == SnapshotState::Valid);
  volume->write(128 * kKiB, block.data(), 4096);  // the third chunk does not fit
  std::vector<uint8_t> check(4096);
  volume->read(128 * kKiB, check.data(), 4096);
  CHECK(check == block);
  CHECK(store->find("small").state == SnapshotState::Invalid);
  CHECK_EQ(store->stats().overflowCount, 1u);
  std::vector<uint8_t> target(4096);
  CHECK_THROWS_CODE(store->read(small.slot, small.id, 0, target.data(), 4096), ERR_SNAPSHOT_INVALID);
  CHECK_THROWS_CODE(store->restore(small.slot, small.id), ERR_SNAPSHOT_INVALID);
  // Later writes do not preserve for it; deleting it returns its chunks for the next snapshot.
  volume->write(192 * kKiB, block.data(), 4096);
  CHECK_EQ(store->stats().preserveCount, 2u);
  store->deleteSnapshot("small");
  CHECK_EQ(store->stats().storeChunksUsed, 0u);
  const SnapshotInfo next = store->createSnapshot("next");
  const std::vector<uint8_t> now = readVolume(*volume);
  volume->write(0, data.data(), 128 * kKiB);
  CHECK(readSnapshot(*store, next) == now);
}

TEST(snapshot_delete_returns_memory) {
  auto volume = makeVolume(4 * kMiB);
  SnapshotStoreOptions options;
  auto region = bmtest::anonymousRegion(SnapshotStore::regionBytesFor(4 * kMiB, options));
  auto store = SnapshotStore::create(region, volume, options);
  std::vector<uint8_t> data(4 * kMiB, 0x33);
  volume->write(0, data.data(), data.size());
  store->createSnapshot("big");
  const uint64_t emptyBytes = region->allocatedBytes();
  std::fill(data.begin(), data.end(), 0x44);
  volume->write(0, data.data(), data.size());
  CHECK(region->allocatedBytes() >= emptyBytes + 4 * kMiB);
  store->deleteSnapshot("big");
  CHECK(region->allocatedBytes() < emptyBytes + 64 * kKiB);
  CHECK_EQ(store->stats().storeChunksUsed, 0u);
}

TEST(snapshot_names_limits_and_stale_handles) {
  auto volume = makeVolume(kMiB);
  auto store = makeStore(volume);
  CHECK_THROWS_AS(store->createSnapshot(""), bm::ArgumentError);
  CHECK_THROWS_AS(store->createSnapshot("bad name"), bm::ArgumentError);
  CHECK_THROWS_AS(store->createSnapshot(std::string(48, 'x')), bm::ArgumentError);
  const SnapshotInfo first = store->createSnapshot("x");
  CHECK_THROWS_CODE(store->createSnapshot("x"), ERR_SNAPSHOT_EXISTS);
  for (uint32_t i = 1; i < SnapshotStore::kMaxSnapshots; i++) store->createSnapshot("n" + std::to_string(i));
  CHECK_THROWS_CODE(store->createSnapshot("one-too-many"), ERR_SNAPSHOT_LIMIT);
  CHECK_EQ(store->list().size(), SnapshotStore::kMaxSnapshots);
  store->deleteSnapshot("x");
  CHECK_THROWS_CODE(store->deleteSnapshot("x"), ERR_SNAPSHOT_NOT_FOUND);
  CHECK_THROWS_CODE(store->find("x"), ERR_SNAPSHOT_NOT_FOUND);
  const SnapshotInfo reused = store->createSnapshot("y");
  CHECK_EQ(reused.slot, first.slot);
  std::vector<uint8_t> target(16);
  CHECK_THROWS_CODE(store->read(first.slot, first.id, 0, target.data(), 16), ERR_SNAPSHOT_NOT_FOUND);
  CHECK_THROWS_AS(store->read(reused.slot, reused.id, kMiB - 8, target.data(), 16), bm::RangeError);
  CHECK_THROWS_AS(store->read(99, reused.id, 0, target.data(), 16), bm::RangeError);
}

TEST(snapshot_store_options_and_attachment) {
  auto volume = makeVolume(kMiB, 8192);
  SnapshotStoreOptions options;
  auto region = bmtest::anonymousRegion(SnapshotStore::regionBytesFor(kMiB, options));
  options.chunkBytes = 4096;  // below the block size
  CHECK_THROWS_AS(SnapshotStore::create(region, volume, options), bm::RangeError);
  options.chunkBytes = 3 * 8192;
  CHECK_THROWS_AS(SnapshotStore::create(region, volume, options), bm::RangeError);
  options.chunkBytes = 32 * kMiB;
  CHECK_THROWS_AS(SnapshotStore::create(region, volume, options), bm::RangeError);
  options.chunkBytes = 8192;
  options.storeBytes = 65 * kMiB;
  CHECK_THROWS_AS(SnapshotStore::create(region, volume, options), bm::RangeError);
  options.storeBytes = 0;
  auto tooSmall = bmtest::anonymousRegion(4096);
  CHECK_THROWS_CODE(SnapshotStore::create(tooSmall, volume, options), ERR_REGION_TOO_SMALL);
  auto store = SnapshotStore::create(bmtest::anonymousRegion(SnapshotStore::regionBytesFor(kMiB, options)), volume, options);
  CHECK_EQ(store->chunkBytes(), 8192u);
  CHECK_EQ(store->storeChunkCount(), kMiB / 8192);
  CHECK_THROWS_CODE(SnapshotStore::create(region, volume, options), ERR_SNAPSHOT_ATTACHED);
  CHECK(volume->interceptorRequired());
  // Closing an anonymous store ends its snapshots; the volume writes freely again.
  store->close();
  CHECK(!volume->interceptorRequired());
  std::vector<uint8_t> block(8192, 1);
  volume->write(0, block.data(), block.size());
  CHECK_THROWS_CODE(store->createSnapshot("after"), ERR_SNAPSHOT_CLOSED);
  // Another volume's store is refused.
  auto other = makeVolume(kMiB, 8192);
  auto otherRegion = bmtest::anonymousRegion(SnapshotStore::regionBytesFor(kMiB, options));
  auto otherStore = SnapshotStore::create(otherRegion, other, options);
  otherStore->close();
  CHECK_THROWS_CODE(SnapshotStore::open(otherRegion, volume), ERR_SNAPSHOT_BAD_HEADER);
  CHECK_THROWS_CODE(SnapshotStore::open(bmtest::anonymousRegion(kMiB), volume), ERR_SNAPSHOT_BAD_HEADER);
}

TEST(snapshot_shared_store_survives_its_objects_and_refuses_detached_writes) {
  bmtest::SharedName volumeName("snapvol");
  bmtest::SharedName storeName("snapstore");
  const uint64_t capacityBytes = 2 * kMiB;
  SnapshotStoreOptions options;
  std::vector<uint8_t> original(capacityBytes);
  fill(original, 30);
  {
    auto volume = std::shared_ptr<Volume>(Volume::create(
        bmtest::sharedRegion(volumeName.str(), Volume::regionBytesFor(capacityBytes), true, false),
        bm::VolumeOptions{capacityBytes, 4096, false}));
    auto store = SnapshotStore::create(
        bmtest::sharedRegion(storeName.str(), SnapshotStore::regionBytesFor(capacityBytes, options), true, false),
        volume, options);
    volume->write(0, original.data(), capacityBytes);
    store->createSnapshot("kept");
    std::vector<uint8_t> block(4096, 9);
    volume->write(8192, block.data(), 4096);
    store->close();
    // Closed store, open volume: writes are refused, reads go on.
    CHECK_THROWS_CODE(volume->write(0, block.data(), 4096), ERR_SNAPSHOT_DETACHED);
    std::vector<uint8_t> target(4096);
    volume->read(0, target.data(), 4096);
  }
  // A new pair of objects (as a restarted process would open them).
  auto volume = std::shared_ptr<Volume>(Volume::open(bmtest::sharedRegion(volumeName.str(), 0, false, true)));
  CHECK_THROWS_CODE(volume->write(0, original.data(), 4096), ERR_SNAPSHOT_DETACHED);
  auto store = SnapshotStore::open(bmtest::sharedRegion(storeName.str(), 0, false, true), volume);
  const SnapshotInfo kept = store->find("kept");
  CHECK(readSnapshot(*store, kept) == original);
  std::vector<uint8_t> block(4096, 7);
  volume->write(kMiB, block.data(), 4096);
  CHECK(readSnapshot(*store, kept) == original);
  store->destroy();
  CHECK(!volume->interceptorRequired());
  volume->write(0, block.data(), 4096);
}

TEST(snapshot_a_dead_lock_holder_is_recovered_from_the_chunk_maps) {
  bmtest::SharedName volumeName("snaprecover");
  bmtest::SharedName storeName("snaprecoverstore");
  const uint64_t capacityBytes = kMiB;
  SnapshotStoreOptions options;
  auto volume = std::shared_ptr<Volume>(Volume::create(
      bmtest::sharedRegion(volumeName.str(), Volume::regionBytesFor(capacityBytes), true, false),
      bm::VolumeOptions{capacityBytes, 4096, false}));
  auto storeRegion = bmtest::sharedRegion(storeName.str(), SnapshotStore::regionBytesFor(capacityBytes, options), true, false);
  auto store = SnapshotStore::create(storeRegion, volume, options);
  std::vector<uint8_t> data(capacityBytes);
  fill(data, 40);
  volume->write(0, data.data(), capacityBytes);
  const SnapshotInfo snapshot = store->createSnapshot("s");
  std::vector<uint8_t> block(4096, 3);
  volume->write(0, block.data(), 4096);
  CHECK_EQ(store->stats().storeChunksUsed, 1u);

  // A child takes the lock, leaks a store chunk (high-water bump without a map entry, as a kill
  // between allocation and the map entry would) and dies holding the lock.
  const pid_t child = fork();
  if (child == 0) {
    uint8_t* header = storeRegion->data();
    std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(header + 64)).store(static_cast<uint32_t>(getpid()));
    std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(header + 80)).fetch_add(3);
    _exit(0);
  }
  int status = 0;
  waitpid(child, &status, 0);
  REQUIRE(WIFEXITED(status));
  CHECK_EQ(store->stats().storeChunksUsed, 4u);
  // The next locked call takes the lock over and rebuilds the allocator.
  volume->write(64 * kKiB, block.data(), 4096);
  CHECK_EQ(store->stats().storeChunksUsed, 2u);
  std::vector<uint8_t> expected = data;
  CHECK(readSnapshot(*store, snapshot) == expected);
  store->destroy();
}

TEST(snapshot_the_write_path_does_not_allocate) {
  auto volume = makeVolume(4 * kMiB);
  auto store = makeStore(volume);
  std::vector<uint8_t> block(4096, 0x11);
  for (uint64_t byteOffset = 0; byteOffset < 4 * kMiB; byteOffset += 4096) volume->write(byteOffset, block.data(), 4096);
  for (int i = 0; i < 8; i++) store->createSnapshot("a" + std::to_string(i));
  const uint64_t before = allocationCount.load();
  for (uint64_t byteOffset = 0; byteOffset < 4 * kMiB; byteOffset += 4096) {
    volume->write(byteOffset, block.data(), 4096);  // first overwrites and later ones
    volume->writeZeroes(byteOffset, 512, false);
  }
  CHECK_EQ(allocationCount.load() - before, 0u);
  CHECK_EQ(store->stats().preserveCount, 4 * kMiB / (64 * kKiB));
}

BM_TEST_MAIN()
