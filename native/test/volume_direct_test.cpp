// Volume direct writes (beginDirectWrite / commitDirectWrite: a payload received straight into
// the store, docs/nbd-receive.md): bitmaps are marked and the copy-on-write seam runs before any
// byte lands; commit marks again, fences and appends the journal record from the store; an
// interceptor that may route gets null (nothing done, the caller takes write()); a bad range
// throws and changes nothing; commit of a payload that never fully landed records what is there.
#include <cstring>
#include <vector>

#include "check.hpp"
#include "journal.hpp"
#include "test_support.hpp"
#include "volume.hpp"

using bm::RecordKind;
using bm::Volume;
using bm::VolumeOptions;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

std::unique_ptr<Volume> makeVolume(uint64_t capacityBytes, bool strict = false) {
  auto region = bmtest::anonymousRegion(Volume::regionBytesFor(capacityBytes));
  VolumeOptions options;
  options.capacityBytes = capacityBytes;
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

// Records the calls; never routes unless told it may (mayRoute) and does (takeOver).
class RecordingInterceptor : public bm::WriteInterceptor {
 public:
  void preserve(Volume& volume, uint64_t byteOffset, uint64_t byteLength) override {
    preserveCount++;
    if (byteLength > 0) preservedFirstByte = volume.data()[byteOffset];
  }
  bool route(Volume&, uint64_t, uint64_t, const uint8_t*, RecordKind) override {
    routeCount++;
    return takeOver;
  }
  bool mayRoute() const noexcept override { return routes; }
  bool routes = false;
  bool takeOver = false;
  int preserveCount = 0;
  int routeCount = 0;
  int preservedFirstByte = -1;
};

}  // namespace

TEST(direct_write_marks_bitmaps_before_bytes_and_commits_once_complete) {
  auto volume = makeVolume(4 * kMiB);
  auto bitmap = volume->createBitmap("oos", 65536, true);
  uint8_t* target = volume->beginDirectWrite(65536 + 100, 3 * 65536);
  REQUIRE(target != nullptr);
  CHECK(target == volume->data() + 65536 + 100);
  // Before a byte landed: tracks 1..4 are dirty already (conservative), nothing else.
  CHECK_EQ(bitmap->count(), 4u);
  CHECK(bitmap->test(1) && bitmap->test(4) && !bitmap->test(0) && !bitmap->test(5));
  CHECK_EQ(volume->stats().writeCount, 0u);
  std::memset(target, 0x5a, 3 * 65536);
  bitmap->clearAll();  // a consumer clears, then reads; commit marks again (data before bits)
  CHECK_EQ(volume->commitDirectWrite(65536 + 100, 3 * 65536), 0u);  // no journal
  CHECK_EQ(bitmap->count(), 4u);
  std::vector<uint8_t> back(3 * 65536);
  volume->read(65536 + 100, back.data(), back.size());
  CHECK(back[0] == 0x5a && back[back.size() - 1] == 0x5a);
  const auto stats = volume->stats();
  CHECK_EQ(stats.writeCount, 1u);
  CHECK_EQ(stats.writeBytes, 3u * 65536u);
  CHECK_EQ(stats.bitmapMarkCount, 1u);
}

TEST(direct_write_journal_record_carries_what_the_store_holds) {
  auto volume = makeVolume(4 * kMiB);
  auto journal = makeJournal(4 * kMiB, kMiB);
  volume->attachJournal(journal);
  uint8_t* target = volume->beginDirectWrite(kMiB, 128 * 1024);
  REQUIRE(target != nullptr);
  // Only the first half landed (the client vanished): commit records exactly what is there.
  std::memset(target, 0x11, 64 * 1024);
  CHECK_EQ(volume->commitDirectWrite(kMiB, 128 * 1024), 1u);
  bm::JournalRecord record;
  std::vector<uint8_t> payload(128 * 1024);
  REQUIRE_EQ(journal->readFrom(1, 1, &record, payload.data(), payload.size()), 1u);
  CHECK(record.kind == RecordKind::Write);
  CHECK_EQ(record.byteOffset, kMiB);
  CHECK_EQ(record.payloadBytes, 128u * 1024u);
  std::vector<uint8_t> store(128 * 1024);
  volume->read(kMiB, store.data(), store.size());
  CHECK(std::memcmp(payload.data(), store.data(), store.size()) == 0);
  CHECK_EQ(payload[0], 0x11);
  CHECK_EQ(payload[64 * 1024], 0);
  // A record larger than the journal takes is "full", as for write().
  REQUIRE(volume->beginDirectWrite(0, 2 * kMiB) != nullptr);
  CHECK_EQ(volume->commitDirectWrite(0, 2 * kMiB), Volume::kJournalFull);
}

TEST(direct_write_runs_the_copy_on_write_seam_first_and_again_at_commit) {
  auto volume = makeVolume(kMiB);
  std::vector<uint8_t> old(4096, 0x42);
  volume->write(0, old.data(), old.size());
  RecordingInterceptor interceptor;
  volume->setInterceptor(&interceptor);
  uint8_t* target = volume->beginDirectWrite(0, 4096);
  REQUIRE(target != nullptr);
  CHECK_EQ(interceptor.preserveCount, 1);
  CHECK_EQ(interceptor.preservedFirstByte, 0x42);  // the old bytes, before any new one landed
  std::memset(target, 0x77, 4096);
  volume->commitDirectWrite(0, 4096);
  CHECK_EQ(interceptor.preserveCount, 2);  // a snapshot created meanwhile gets its chance
  CHECK_EQ(interceptor.routeCount, 0);
  volume->setInterceptor(nullptr);
}

TEST(direct_write_is_refused_without_effect_when_the_write_may_be_diverted) {
  auto volume = makeVolume(kMiB);
  auto bitmap = volume->createBitmap("oos", 65536, true);
  RecordingInterceptor interceptor;
  interceptor.routes = true;
  volume->setInterceptor(&interceptor);
  CHECK(volume->beginDirectWrite(0, 65536) == nullptr);
  CHECK_EQ(interceptor.preserveCount, 0);
  CHECK_EQ(bitmap->count(), 0u);
  volume->setInterceptor(nullptr);
  // An empty range has nowhere to land either.
  CHECK(volume->beginDirectWrite(0, 0) == nullptr);
}

TEST(direct_write_bad_ranges_throw_and_change_nothing) {
  auto volume = makeVolume(kMiB, true);
  auto bitmap = volume->createBitmap("oos", 65536, true);
  CHECK_THROWS_AS(volume->beginDirectWrite(kMiB - 4096, 8192), bm::RangeError);
  CHECK_THROWS_AS(volume->beginDirectWrite(100, 4096), bm::RangeError);  // strict: misaligned
  CHECK_THROWS_AS(volume->commitDirectWrite(kMiB, 4096), bm::RangeError);
  CHECK_EQ(bitmap->count(), 0u);
  CHECK_EQ(volume->stats().writeCount, 0u);
  volume->close();
  CHECK_THROWS_CODE(volume->beginDirectWrite(0, 4096), ERR_VOLUME_CLOSED);
}

BM_TEST_MAIN()
