// Volume: reads and writes at any offset against a shadow copy, batch validation atomicity,
// strict mode, holes, and no allocation per write. What the write path records (bitmaps, the
// bitmap directory, the journal, the interceptor seam) is in volume_recording_test.cpp.
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "check.hpp"
#include "journal.hpp"
#include "test_support.hpp"
#include "volume.hpp"
#include "volume_test_support.hpp"

// Counts heap allocations, to prove the write path makes none.
static std::atomic<uint64_t> allocationCount{0};
void* operator new(size_t byteLength) {
  allocationCount.fetch_add(1, std::memory_order_relaxed);
  if (void* pointer = std::malloc(byteLength == 0 ? 1 : byteLength)) return pointer;
  throw std::bad_alloc();
}
void operator delete(void* pointer) noexcept { std::free(pointer); }
void operator delete(void* pointer, size_t) noexcept { std::free(pointer); }

using bm::RecordKind;
using bm::Volume;
using bm::VolumeOptions;
using bm::WriteRequest;

namespace {

using bmtest::kMiB;
using bmtest::makeJournal;
using bmtest::makeVolume;

std::vector<uint8_t> readAll(Volume& volume) {
  std::vector<uint8_t> bytes(volume.capacityBytes());
  volume.read(0, bytes.data(), bytes.size());
  return bytes;
}

}  // namespace

TEST(volume_random_reads_and_writes_at_any_offset_match_a_shadow_copy) {
  auto random = bmtest::seededRandom("shadow");
  const uint64_t capacityBytes = 2 * kMiB;
  auto volume = makeVolume(capacityBytes);
  std::vector<uint8_t> shadow(capacityBytes, 0);
  std::vector<uint8_t> buffer(300000);
  for (int step = 0; step < 3000; step++) {
    const uint64_t byteLength = random() % 3 == 0 ? random() % 300000 : random() % 5000;
    const uint64_t byteOffset = random() % (capacityBytes - byteLength + 1);
    switch (random() % 4) {
      case 0:
      case 1:
        for (uint64_t i = 0; i < byteLength; i++) buffer[i] = static_cast<uint8_t>(random());
        volume->write(byteOffset, buffer.data(), byteLength);
        std::memcpy(shadow.data() + byteOffset, buffer.data(), byteLength);
        break;
      case 2:
        volume->writeZeroes(byteOffset, byteLength, random() % 2 == 0);
        std::memset(shadow.data() + byteOffset, 0, byteLength);
        break;
      default:
        volume->trim(byteOffset, byteLength);
        std::memset(shadow.data() + byteOffset, 0, byteLength);
        break;
    }
    if (step % 100 == 0) {
      volume->read(byteOffset, buffer.data(), byteLength);
      CHECK(std::memcmp(buffer.data(), shadow.data() + byteOffset, byteLength) == 0);
    }
  }
  CHECK(readAll(*volume) == shadow);
  const auto stats = volume->stats();
  CHECK_EQ(stats.writeCount + stats.zeroCount + stats.trimCount, 3000u);
  CHECK_EQ(stats.batchCount, 3000u);
}

// Writes of 256 KiB and more take the non-temporal copy: every misalignment of source and target
// and every tail length around the 64-byte block must land exactly, touching nothing around it.
TEST(volume_large_writes_land_exactly_at_any_alignment) {
  const uint64_t capacityBytes = 2 * kMiB;
  auto volume = makeVolume(capacityBytes);
  std::vector<uint8_t> shadow(capacityBytes, 0xEE);
  std::vector<uint8_t> fill(capacityBytes, 0xEE);
  volume->write(0, fill.data(), capacityBytes);
  std::vector<uint8_t> source(600 * 1024);
  auto random = bmtest::seededRandom("large-writes");
  for (auto& byte : source) byte = static_cast<uint8_t>(random());
  for (uint64_t sourceSkew : {0u, 1u, 7u, 15u}) {
    for (uint64_t targetSkew : {0u, 3u, 8u, 17u}) {
      for (uint64_t extra : {0u, 1u, 63u, 64u, 65u}) {
        const uint64_t byteLength = 256 * 1024 + extra;
        const uint64_t byteOffset = (random() % 4) * 256 * 1024 + targetSkew;
        volume->write(byteOffset, source.data() + sourceSkew, byteLength);
        std::memcpy(shadow.data() + byteOffset, source.data() + sourceSkew, byteLength);
      }
    }
  }
  CHECK(readAll(*volume) == shadow);
}

TEST(volume_geometry_and_bad_options) {
  auto volume = makeVolume(kMiB);
  CHECK_EQ(volume->capacityBytes(), kMiB);
  CHECK_EQ(volume->blockSize(), 4096u);
  CHECK(!volume->strict());
  CHECK(volume->volumeId() != 0);
  CHECK(makeVolume(kMiB)->volumeId() != volume->volumeId());
  CHECK_EQ(volume->dataByteOffset() % 4096, 0u);
  CHECK_EQ(volume->data(), volume->region()->data() + volume->dataByteOffset());
  CHECK(Volume::regionBytesFor(kMiB) >= volume->dataByteOffset() + kMiB);

  VolumeOptions options;
  options.capacityBytes = kMiB;
  auto region = bmtest::anonymousRegion(Volume::regionBytesFor(kMiB));
  options.blockSize = 1000;
  CHECK_THROWS_AS(Volume::create(region, options), bm::RangeError);
  options.blockSize = 256;
  CHECK_THROWS_AS(Volume::create(region, options), bm::RangeError);
  options.blockSize = 4096;
  options.capacityBytes = kMiB + 512;
  CHECK_THROWS_AS(Volume::create(region, options), bm::RangeError);
  options.capacityBytes = 0;
  CHECK_THROWS_AS(Volume::create(region, options), bm::RangeError);
  options.capacityBytes = 4 * kMiB;
  CHECK_THROWS_CODE(Volume::create(region, options), ERR_REGION_TOO_SMALL);
  CHECK_THROWS_AS(Volume::create(nullptr, options), bm::ArgumentError);
  // A region that is not a volume, and a damaged superblock.
  CHECK_THROWS_CODE(Volume::open(bmtest::anonymousRegion(kMiB)), ERR_VOLUME_BAD_SUPERBLOCK);
  options.capacityBytes = kMiB;
  Volume::create(region, options);
  CHECK(Volume::open(region) != nullptr);
  region->data()[24] ^= 1;  // capacity, under the superblock checksum
  CHECK_THROWS_CODE(Volume::open(region), ERR_VOLUME_BAD_SUPERBLOCK);
}

TEST(volume_ranges_are_checked_with_precise_messages) {
  auto volume = makeVolume(kMiB);
  std::vector<uint8_t> buffer(16384);
  CHECK_THROWS_MESSAGE(volume->write(kMiB - 4096, buffer.data(), 8192), bm::RangeError,
                       "write [1044480, +8192) is outside the volume (capacity 1048576 bytes)");
  CHECK_THROWS_MESSAGE(volume->read(kMiB, buffer.data(), 1), bm::RangeError,
                       "read [1048576, +1) is outside the volume");
  CHECK_THROWS_AS(volume->write(UINT64_MAX - 10, buffer.data(), 20), bm::RangeError);
  CHECK_THROWS_MESSAGE(volume->trim(0, kMiB + 1), bm::RangeError, "trim [0, +1048577)");
  CHECK_THROWS_MESSAGE(volume->writeZeroes(kMiB, 1, false), bm::RangeError, "writeZeroes");
  CHECK_THROWS_AS(volume->allocationMap(1, kMiB), bm::RangeError);
  CHECK_THROWS_AS(volume->write(0, nullptr, 1), bm::ArgumentError);
  // Empty requests at the very end are in range.
  volume->write(kMiB, buffer.data(), 0);
  volume->read(kMiB, buffer.data(), 0);
}

TEST(volume_strict_requires_block_alignment) {
  auto volume = makeVolume(kMiB, true, 512);
  std::vector<uint8_t> buffer(4096, 7);
  volume->write(512, buffer.data(), 1024);
  CHECK_THROWS_MESSAGE(volume->write(100, buffer.data(), 512), bm::RangeError,
                       "write [100, +512) is not aligned to the block size 512 of this strict volume");
  CHECK_THROWS_AS(volume->write(512, buffer.data(), 100), bm::RangeError);
  CHECK_THROWS_AS(volume->read(0, buffer.data(), 511), bm::RangeError);
  CHECK_THROWS_AS(volume->trim(1, 512), bm::RangeError);
  volume->read(512, buffer.data(), 512);
  CHECK_EQ(buffer[0], 7);
  // Non-strict volumes serve the same requests.
  auto loose = makeVolume(kMiB, false, 512);
  loose->write(100, buffer.data(), 3);
  loose->read(99, buffer.data(), 5);
  CHECK_EQ(buffer[0], 0);
  CHECK_EQ(buffer[1], 7);
  CHECK_EQ(buffer[4], 0);
}

TEST(volume_a_batch_with_one_bad_request_changes_nothing) {
  auto volume = makeVolume(kMiB);
  auto journal = makeJournal(1 * kMiB, 64 * 1024);
  volume->attachJournal(journal);
  auto bitmap = volume->createBitmap("oos", 65536, true);
  std::vector<uint8_t> data(8192, 0xEE);
  const WriteRequest requests[] = {
      {0, 4096, data.data(), RecordKind::Write},
      {65536, 4096, nullptr, RecordKind::Zero},
      {131072, 8192, data.data(), RecordKind::Write},
      {kMiB - 100, 200, data.data(), RecordKind::Write},  // out of range
      {200000, 4096, nullptr, RecordKind::Trim},
  };
  const auto before = readAll(*volume);
  const auto statsBefore = volume->stats();
  uint64_t sequences[5] = {};
  CHECK_THROWS_MESSAGE(volume->writeBatch(requests, 5, sequences), bm::RangeError,
                       "request 3 of 5: write [1048476, +200) is outside the volume");
  CHECK(readAll(*volume) == before);
  CHECK_EQ(bitmap->count(), 0u);
  CHECK_EQ(journal->nextSequence(), 1u);
  CHECK_EQ(volume->stats().writeCount, statsBefore.writeCount);
  CHECK_EQ(volume->stats().batchCount, statsBefore.batchCount);
  // A bad kind or a missing payload is refused the same way.
  WriteRequest badKind[] = {{0, 4096, data.data(), RecordKind::Write}, {0, 1, nullptr, RecordKind::Marker}};
  CHECK_THROWS_AS(volume->writeBatch(badKind, 2, nullptr), bm::ArgumentError);
  WriteRequest noData[] = {{0, 4096, data.data(), RecordKind::Write}, {0, 1, nullptr, RecordKind::Write}};
  CHECK_THROWS_AS(volume->writeBatch(noData, 2, nullptr), bm::ArgumentError);
  CHECK(readAll(*volume) == before);
  // Without the bad request the batch goes through, in order, one sequence each.
  const WriteRequest good[] = {requests[0], requests[1], requests[2], requests[4]};
  CHECK_EQ(volume->writeBatch(good, 4, sequences), 0u);
  CHECK_EQ(sequences[0], 1u);
  CHECK_EQ(sequences[3], 4u);
  CHECK_EQ(bitmap->count(), 4u);  // tracks 0, 1, 2, 3 (200000 is in track 3)
}

TEST(volume_holes_zeroes_and_allocation_map) {
  const uint64_t capacityBytes = 64 * kMiB;
  auto volume = makeVolume(capacityBytes);
  auto extents = volume->allocationMap(0, capacityBytes);
  REQUIRE_EQ(extents.size(), 1u);
  CHECK(!extents[0].allocated);
  std::vector<uint8_t> data(kMiB, 5);
  volume->write(8 * kMiB, data.data(), data.size());
  extents = volume->allocationMap(0, capacityBytes);
  REQUIRE_EQ(extents.size(), 3u);
  CHECK_EQ(extents[1].byteOffset, 8 * kMiB);  // relative to the data area
  CHECK_EQ(extents[1].byteLength, kMiB);
  CHECK(extents[1].allocated);
  // Zeroes with punching allowed release the pages; without, they stay allocated.
  volume->writeZeroes(8 * kMiB, kMiB / 2, true);
  volume->writeZeroes(8 * kMiB + kMiB / 2, kMiB / 2, false);
  extents = volume->allocationMap(8 * kMiB, kMiB);
  REQUIRE_EQ(extents.size(), 2u);
  CHECK(!extents[0].allocated);
  CHECK_EQ(extents[1].byteOffset, 8 * kMiB + kMiB / 2);
  volume->trim(0, capacityBytes);
  extents = volume->allocationMap(0, capacityBytes);
  REQUIRE_EQ(extents.size(), 1u);
  CHECK(!extents[0].allocated);
  std::vector<uint8_t> back(kMiB, 1);
  volume->read(8 * kMiB, back.data(), back.size());
  CHECK(back == std::vector<uint8_t>(kMiB, 0));
  CHECK_EQ(volume->region()->allocatedBytes(), 4096u);  // only the superblock remains
  volume->flush();
  CHECK_EQ(volume->stats().flushCount, 1u);
}

TEST(volume_of_one_tebibyte_costs_nothing_untouched) {
  const uint64_t capacityBytes = uint64_t{1} << 40;
  auto volume = makeVolume(capacityBytes);
  auto bitmap = volume->createBitmap("oos", 65536, true);
  std::vector<uint8_t> data(4096, 1);
  volume->write(0, data.data(), 4096);
  volume->write(capacityBytes / 2, data.data(), 4096);
  volume->write(capacityBytes - 4096, data.data(), 4096);
  CHECK_EQ(bitmap->count(), 3u);
  CHECK_EQ(bitmap->findNextSet(1), capacityBytes / 2 / 65536);
  CHECK_EQ(bitmap->findNextClear(0), 1u);
  CHECK_EQ(bitmap->findNextClear(capacityBytes / 2 / 65536), capacityBytes / 2 / 65536 + 1);
  std::vector<uint8_t> back(4096);
  volume->read(capacityBytes / 4, back.data(), back.size());
  // Three data pages, the superblock and three bitmap pages; scanning and reading holes
  // allocated nothing.
  CHECK_EQ(volume->region()->allocatedBytes(), 7 * 4096u);
  bitmap->clearAll();
  CHECK_EQ(bitmap->count(), 0u);
  CHECK_EQ(volume->region()->allocatedBytes(), 4 * 4096u);
}

TEST(volume_close_is_idempotent_and_later_use_throws) {
  auto volume = makeVolume(kMiB);
  volume->close();
  volume->close();
  CHECK(volume->closed());
  std::vector<uint8_t> data(16);
  CHECK_THROWS_CODE(volume->write(0, data.data(), 16), ERR_VOLUME_CLOSED);
  CHECK_THROWS_CODE(volume->read(0, data.data(), 16), ERR_VOLUME_CLOSED);
  CHECK_THROWS_CODE(volume->createBitmap("x", 65536, true), ERR_VOLUME_CLOSED);
  CHECK_THROWS_CODE(volume->flush(), ERR_VOLUME_CLOSED);
  CHECK_THROWS_CODE(volume->data(), ERR_VOLUME_CLOSED);
  CHECK_EQ(volume->stats().writeCount, 0u);
}

TEST(volume_write_path_makes_no_heap_allocation_in_steady_state) {
  auto volume = makeVolume(16 * kMiB);
  auto first = volume->createBitmap("oos", 65536, true);
  auto second = volume->createBitmap("cr", 4096, true);
  auto journal = makeJournal(1 * kMiB, 64 * 1024);
  volume->attachJournal(journal);
  std::vector<uint8_t> data(65536, 8);
  WriteRequest batch[8];
  uint64_t sequences[8];
  for (int i = 0; i < 8; i++) {
    batch[i] = WriteRequest{static_cast<uint64_t>(i) * 70000, 5000, data.data(),
                            i % 3 == 0 ? RecordKind::Zero : RecordKind::Write};
  }
  volume->writeBatch(batch, 8, sequences);  // warm-up: loads the directory cache
  const uint64_t before = allocationCount.load();
  for (int round = 0; round < 500; round++) {
    volume->writeBatch(batch, 8, sequences);
    volume->write(round * 4096, data.data(), 4096);
    if (round % 10 == 0) journal->release(journal->nextSequence() - 1);
  }
  CHECK_EQ(allocationCount.load() - before, 0u);
}

BM_TEST_MAIN()
