// Volume, what the write path records: journal intents while a batch is stored, recording
// bitmaps, the bitmap directory shared between Volume objects and processes, journal sequences
// and "full", and the interceptor seam.
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "check.hpp"
#include "journal.hpp"
#include "test_support.hpp"
#include "volume.hpp"
#include "volume_test_support.hpp"

using bm::RecordKind;
using bm::Volume;
using bm::VolumeOptions;
using bm::WriteRequest;

using bmtest::kMiB;
using bmtest::makeJournal;
using bmtest::makeVolume;

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

BM_TEST_MAIN()
