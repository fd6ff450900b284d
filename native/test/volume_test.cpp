// Volume: reads and writes at any offset against a shadow copy, batch validation atomicity,
// strict mode, recording bitmaps, journal sequences and "full", the bitmap directory shared
// between Volume objects and processes, the interceptor seam, holes, and no allocation per write.
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <new>
#include <vector>

#include "check.hpp"
#include "journal.hpp"
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

using bm::RecordKind;
using bm::Volume;
using bm::VolumeOptions;
using bm::WriteRequest;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

std::unique_ptr<Volume> makeVolume(uint64_t capacityBytes, bool strict = false,
                                   uint32_t blockSize = 4096) {
  auto region = bmtest::anonymousRegion(Volume::regionBytesFor(capacityBytes));
  VolumeOptions options;
  options.capacityBytes = capacityBytes;
  options.blockSize = blockSize;
  options.strict = strict;
  return Volume::create(region, options);
}

std::shared_ptr<bm::Journal> makeJournal(uint64_t capacityBytes, uint64_t maxRecordBytes) {
  bm::JournalOptions options;
  options.capacityBytes = capacityBytes;
  options.maxRecordBytes = maxRecordBytes;
  auto region = bmtest::anonymousRegion(bm::Journal::regionBytesFor(capacityBytes));
  return bm::Journal::create(region, options);
}

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

// Sees the journal's intent list from a second Journal object on the same region while the
// write is in its store step (what a reopen after a SIGKILL at that instant would find).
class IntentProbe : public bm::WriteInterceptor {
 public:
  explicit IntentProbe(std::shared_ptr<bm::Region> region) : region_(std::move(region)) {}
  void preserve(Volume&, uint64_t, uint64_t) override {
    seen.push_back(bm::Journal::open(region_)->pendingIntents());
  }
  bool route(Volume&, uint64_t, uint64_t, const uint8_t*, RecordKind) override { return false; }
  std::vector<std::vector<bm::JournalIntent>> seen;

 private:
  std::shared_ptr<bm::Region> region_;
};

TEST(volume_lists_a_batch_as_journal_intents_while_it_is_stored) {
  auto volume = makeVolume(kMiB);
  bm::JournalOptions options;
  options.capacityBytes = kMiB;
  options.maxRecordBytes = 64 * 1024;
  auto region = bmtest::anonymousRegion(bm::Journal::regionBytesFor(options.capacityBytes));
  std::shared_ptr<bm::Journal> journal = bm::Journal::create(region, options);
  volume->attachJournal(journal);
  IntentProbe probe(region);
  volume->setInterceptor(&probe);
  std::vector<uint8_t> data(4096, 0x5A);
  const WriteRequest requests[] = {
      {0, 4096, data.data(), RecordKind::Write},
      {65536, 8192, nullptr, RecordKind::Zero},
  };
  volume->writeBatch(requests, 2, nullptr);
  REQUIRE(probe.seen.size() == 2u);
  for (const auto& intents : probe.seen) {
    REQUIRE(intents.size() == 2u);
    CHECK_EQ(intents[0].volumeId, volume->volumeId());
    CHECK_EQ(intents[0].byteOffset, 0u);
    CHECK_EQ(intents[0].byteLength, 4096u);
    CHECK(intents[0].kind == RecordKind::Write);
    CHECK_EQ(intents[1].byteOffset, 65536u);
    CHECK(intents[1].kind == RecordKind::Zero);
  }
  // A record the journal can never hold is counted full by the journal itself (its readers see it).
  const uint64_t fullBefore = journal->stats().fullCount;
  std::vector<uint8_t> large(128 * 1024, 0x6B);
  CHECK_EQ(volume->write(0, large.data(), large.size()), Volume::kJournalFull);
  CHECK_EQ(journal->stats().fullCount, fullBefore + 1);
  CHECK_EQ(journal->nextSequence(), 3u);
  // Recorded: the list is empty again.
  CHECK(bm::Journal::open(region)->pendingIntents().empty());
  CHECK_EQ(journal->nextSequence(), 3u);
  // A batch longer than the area lists its tail as one covering write range.
  std::vector<WriteRequest> many;
  for (uint64_t i = 0; i < bm::Journal::kMaxIntents + 6; i++) many.push_back({i * 8192, 512, data.data(), RecordKind::Write});
  probe.seen.clear();
  volume->writeBatch(many.data(), many.size(), nullptr);
  const auto& intents = probe.seen.front();
  REQUIRE(intents.size() == static_cast<size_t>(bm::Journal::kMaxIntents));
  const auto& tail = intents.back();
  CHECK_EQ(tail.byteOffset, (bm::Journal::kMaxIntents - 1) * 8192u);
  CHECK_EQ(tail.byteOffset + tail.byteLength, (bm::Journal::kMaxIntents + 5) * 8192u + 512u);
  volume->setInterceptor(nullptr);
  // A direct write is listed from begin to commit in a slot of its own, past batches between.
  REQUIRE(volume->beginDirectWrite(65536, 4096) != nullptr);
  volume->write(0, data.data(), 512);
  {
    const auto found = bm::Journal::open(region)->pendingIntents();
    REQUIRE(found.size() == 1u);
    CHECK_EQ(found[0].byteOffset, 65536u);
    CHECK_EQ(found[0].byteLength, 4096u);
  }
  volume->commitDirectWrite(65536, 4096);
  CHECK(bm::Journal::open(region)->pendingIntents().empty());
  // Every direct slot taken: begin answers null (the caller takes write()), and frees none.
  for (uint32_t i = 0; i < bm::Journal::kDirectIntents; i++) REQUIRE(volume->beginDirectWrite(i * 4096, 4096) != nullptr);
  CHECK(volume->beginDirectWrite(512 * 1024, 4096) == nullptr);
  CHECK_EQ(bm::Journal::open(region)->pendingIntents().size(), static_cast<size_t>(bm::Journal::kDirectIntents));
  for (uint32_t i = 0; i < bm::Journal::kDirectIntents; i++) volume->commitDirectWrite(i * 4096, 4096);
  CHECK(bm::Journal::open(region)->pendingIntents().empty());
  // A crashed writer's slots are found by the next opener, and cleared once it journaled them.
  REQUIRE(volume->beginDirectWrite(8192, 4096) != nullptr);
  auto reopened = bm::Journal::open(region);
  CHECK_EQ(reopened->pendingIntents().size(), 1u);
  reopened->clearPendingIntents();
  CHECK(bm::Journal::open(region)->pendingIntents().empty());
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

TEST(volume_recording_bitmaps_are_marked) {
  auto volume = makeVolume(4 * kMiB);
  auto recording = volume->createBitmap("cr:cycle-1", 65536, true);
  auto idle = volume->createBitmap("diff.idle", 4096, false);
  std::vector<uint8_t> data(100000, 1);
  volume->write(65535, data.data(), 2);          // tracks 0 and 1
  volume->writeZeroes(10 * 65536, 1, false);     // track 10
  volume->trim(20 * 65536, 3 * 65536);           // tracks 20..22
  volume->write(4 * kMiB - 1, data.data(), 1);   // last track
  CHECK_EQ(recording->count(), 7u);
  CHECK(recording->test(0) && recording->test(1) && recording->test(10));
  CHECK(recording->test(22) && !recording->test(23));
  CHECK(recording->test(63));
  CHECK_EQ(idle->count(), 0u);
  CHECK_EQ(volume->stats().bitmapMarkCount, 4u);
  // Turning recording on and off takes effect with the next batch.
  volume->setBitmapRecording("diff.idle", true);
  volume->setBitmapRecording("cr:cycle-1", false);
  volume->write(40 * 65536 + 4095, data.data(), 2);  // 4 KiB tracks 640 and 641
  CHECK_EQ(idle->count(), 2u);
  CHECK(idle->test(640) && idle->test(641));
  CHECK_EQ(recording->count(), 7u);
  // The same bits are visible through a fresh view and the listing.
  auto view = volume->openBitmap("cr:cycle-1");
  CHECK_EQ(view->count(), 7u);
  const auto listed = volume->listBitmaps();
  REQUIRE_EQ(listed.size(), 2u);
  CHECK_EQ(listed[0].name, std::string("cr:cycle-1"));
  CHECK(!listed[0].recording);
  CHECK_EQ(listed[1].granularityBytes, 4096u);
  CHECK_EQ(listed[1].bitCount, 1024u);
}

TEST(volume_bitmap_directory_rules) {
  auto volume = makeVolume(kMiB);
  CHECK_THROWS_AS(volume->createBitmap("", 65536, true), bm::ArgumentError);
  CHECK_THROWS_AS(volume->createBitmap(std::string(48, 'a'), 65536, true), bm::ArgumentError);
  CHECK_THROWS_AS(volume->createBitmap("has space", 65536, true), bm::ArgumentError);
  CHECK_THROWS_AS(volume->createBitmap("slash/no", 65536, true), bm::ArgumentError);
  CHECK_THROWS_AS(volume->createBitmap("ok", 2048, true), bm::RangeError);
  CHECK_THROWS_AS(volume->createBitmap("ok", 65537, true), bm::RangeError);
  volume->createBitmap(std::string(47, 'z'), 65536, true);
  CHECK_THROWS_CODE(volume->createBitmap(std::string(47, 'z'), 4096, false), ERR_BITMAP_EXISTS);
  for (uint32_t i = 1; i < Volume::kBitmapSlotCount; i++) {
    volume->createBitmap("b" + std::to_string(i), 4096 << (i % 4), i % 2 == 0);
  }
  CHECK_THROWS_CODE(volume->createBitmap("one-too-many", 65536, true), ERR_BITMAP_LIMIT);
  CHECK_THROWS_CODE(volume->openBitmap("absent"), ERR_BITMAP_NOT_FOUND);
  CHECK_THROWS_CODE(volume->deleteBitmap("absent"), ERR_BITMAP_NOT_FOUND);
  CHECK_THROWS_CODE(volume->setBitmapRecording("absent", true), ERR_BITMAP_NOT_FOUND);
  // A deleted bitmap's slot is reused and the new bitmap starts clear.
  auto old = volume->openBitmap("b2");
  old->setAll();
  volume->deleteBitmap("b2");
  auto fresh = volume->createBitmap("b2-again", 4096, false);
  CHECK_EQ(fresh->count(), 0u);
  CHECK_EQ(volume->listBitmaps().size(), static_cast<size_t>(Volume::kBitmapSlotCount));
}

TEST(volume_journal_sequences_and_full) {
  auto volume = makeVolume(4 * kMiB);
  auto bitmap = volume->createBitmap("oos", 65536, true);
  std::vector<uint8_t> data(16384, 3);
  CHECK_EQ(volume->write(0, data.data(), 4096), 0u);  // no journal attached
  auto journal = makeJournal(64 * 1024, 16 * 1024);
  volume->attachJournal(journal);
  CHECK_EQ(volume->write(0, data.data(), 4096), 1u);
  CHECK_EQ(volume->writeZeroes(4096, 4096, false), 2u);
  CHECK_EQ(volume->trim(8192, 4096), 3u);
  // A write larger than a journal record can be is reported as full (the bitmap has it).
  std::vector<uint8_t> big(20000, 4);
  CHECK_EQ(volume->write(kMiB, big.data(), big.size()), Volume::kJournalFull);
  CHECK(bitmap->test(kMiB / 65536));
  // Fill the ring: later writes return kJournalFull and still mark the bitmap.
  uint64_t last = 3;
  uint64_t fullCount = 1;
  for (int i = 0; i < 20; i++) {
    const uint64_t sequence = volume->write(2 * kMiB + i * 65536, data.data(), 16384);
    if (sequence == Volume::kJournalFull) {
      fullCount++;
    } else {
      CHECK_EQ(sequence, last + 1);
      last = sequence;
    }
  }
  CHECK(fullCount > 1);
  CHECK_EQ(bitmap->count(), 1u + 1u + 20u);
  // A full ring for 16 KiB records may still hold small ones: fill it with empty records.
  while (journal->append(RecordKind::Marker, 0, 0, 0, nullptr, 0) != 0) last++;
  WriteRequest batch[3] = {{0, 4096, data.data(), RecordKind::Write},
                           {4096, 4096, nullptr, RecordKind::Zero},
                           {8192, 4096, nullptr, RecordKind::Trim}};
  uint64_t sequences[3] = {};
  CHECK_EQ(volume->writeBatch(batch, 3, sequences), 3u);
  CHECK_EQ(sequences[0], Volume::kJournalFull);
  CHECK_EQ(sequences[2], Volume::kJournalFull);
  const auto stats = volume->stats();
  CHECK_EQ(stats.journalFullCount, fullCount + 3);
  CHECK_EQ(stats.journalAppendCount, 3 + (20 - (fullCount - 1)));
  // The records carry the volume id, the range and the payload.
  bm::JournalRecord records[3];
  std::vector<uint8_t> payload(16384);
  CHECK_EQ(journal->readFrom(1, 3, records, payload.data(), payload.size()), 3u);
  CHECK_EQ(records[0].volumeId, volume->volumeId());
  CHECK(records[0].kind == RecordKind::Write);
  CHECK_EQ(records[0].payloadBytes, 4096u);
  CHECK(records[1].kind == RecordKind::Zero);
  CHECK_EQ(records[1].payloadBytes, 0u);
  CHECK_EQ(records[2].byteOffset, 8192u);
  CHECK_EQ(records[2].byteLength, 4096u);
  // After release there is room again.
  journal->release(journal->nextSequence() - 1);
  CHECK_EQ(volume->write(0, data.data(), 100), last + 1);
  volume->attachJournal(nullptr);
  CHECK_EQ(volume->write(0, data.data(), 100), 0u);
}

TEST(volume_two_objects_on_one_shared_region_see_new_bitmaps) {
  bmtest::SharedName name("volume");
  const uint64_t capacityBytes = 4 * kMiB;
  auto regionA = bmtest::sharedRegion(name.str(), Volume::regionBytesFor(capacityBytes), true, false);
  VolumeOptions options;
  options.capacityBytes = capacityBytes;
  auto volumeA = Volume::create(regionA, options);
  auto regionB = bmtest::sharedRegion(name.str(), 0, false, true);
  auto volumeB = Volume::open(regionB);
  CHECK_EQ(volumeB->volumeId(), volumeA->volumeId());
  std::vector<uint8_t> data(4096, 9);
  volumeA->write(0, data.data(), 4096);  // A has loaded its directory cache
  // B creates a bitmap after A opened; A's next batch marks it.
  auto bitmapB = volumeB->createBitmap("made-by-b", 65536, true);
  volumeA->write(5 * 65536, data.data(), 4096);
  CHECK(bitmapB->test(5));
  CHECK_EQ(bitmapB->count(), 1u);
  std::vector<uint8_t> back(4096);
  volumeB->read(5 * 65536, back.data(), back.size());
  CHECK(back == data);

  // A third party in another process creates one more; A marks it as well.
  std::fflush(nullptr);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int status = 1;
    try {
      auto region = bmtest::sharedRegion(name.str(), 0, false, true);
      auto volume = Volume::open(region);
      volume->createBitmap("made-by-child", 4096, true);
      status = 0;
    } catch (...) {
    }
    _exit(status);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  volumeA->write(7 * 4096, data.data(), 1);
  auto childBitmap = volumeA->openBitmap("made-by-child");
  CHECK(childBitmap->test(7));
  CHECK_EQ(childBitmap->count(), 1u);
  // Deleting in B stops A's marking.
  volumeB->deleteBitmap("made-by-b");
  volumeA->write(9 * 65536, data.data(), 1);
  CHECK_EQ(volumeB->listBitmaps().size(), 1u);
}

namespace {

// Diverts every write into its own buffer and records the order of the calls.
class DivertingInterceptor : public bm::WriteInterceptor {
 public:
  explicit DivertingInterceptor(uint64_t capacityBytes) : diverted(capacityBytes, 0) {}
  void preserve(Volume& volume, uint64_t byteOffset, uint64_t byteLength) override {
    preserveCount++;
    // Called before the store changes: the old bytes are still there to preserve.
    if (byteLength > 0) preservedFirstByte = volume.data()[byteOffset];
  }
  bool route(Volume&, uint64_t byteOffset, uint64_t byteLength, const uint8_t* data,
             RecordKind kind) override {
    routeCount++;
    if (kind == RecordKind::Write) {
      std::memcpy(diverted.data() + byteOffset, data, byteLength);
    } else {
      std::memset(diverted.data() + byteOffset, 0, byteLength);
    }
    return takeOver;
  }
  std::vector<uint8_t> diverted;
  bool takeOver = true;
  int preserveCount = 0;
  int routeCount = 0;
  int preservedFirstByte = -1;
};

}  // namespace

TEST(volume_interceptor_that_routes_takes_the_write_and_bitmaps_still_see_it) {
  auto volume = makeVolume(kMiB);
  auto bitmap = volume->createBitmap("oos", 65536, true);
  auto journal = makeJournal(256 * 1024, 64 * 1024);
  volume->attachJournal(journal);
  std::vector<uint8_t> data(4096, 0x42);
  volume->write(0, data.data(), 4096);  // before the interceptor: stored normally
  DivertingInterceptor interceptor(kMiB);
  volume->setInterceptor(&interceptor);
  std::vector<uint8_t> other(4096, 0x77);
  CHECK_EQ(volume->write(0, other.data(), 4096), 2u);
  CHECK_EQ(interceptor.preserveCount, 1);
  CHECK_EQ(interceptor.routeCount, 1);
  CHECK_EQ(interceptor.preservedFirstByte, 0x42);
  CHECK_EQ(volume->data()[0], 0x42);  // the store was skipped
  CHECK_EQ(interceptor.diverted[0], 0x77);
  volume->write(3 * 65536, other.data(), 10);
  CHECK(bitmap->test(3));
  CHECK_EQ(journal->nextSequence(), 4u);
  // An interceptor that declines lets the store happen.
  interceptor.takeOver = false;
  volume->write(0, other.data(), 4096);
  CHECK_EQ(volume->data()[0], 0x77);
  volume->setInterceptor(nullptr);
  volume->trim(0, 4096);
  CHECK_EQ(interceptor.routeCount, 3);
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
