// Journal: append/read/release against a std::deque model (random payloads, wrap-around, full),
// reopen, crash recovery (torn tail, unpublished record, torn cursor slot), corruption.
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <deque>
#include <vector>

#include "check.hpp"
#include "crc32c.hpp"
#include "journal.hpp"
#include "test_support.hpp"

using bm::Journal;
using bm::JournalOptions;
using bm::JournalRecord;
using bm::RecordKind;

namespace {

struct ModelRecord {
  uint64_t sequence;
  RecordKind kind;
  uint64_t volumeId;
  uint64_t byteOffset;
  uint32_t byteLength;
  uint16_t flags;
  std::vector<uint8_t> payload;
};

JournalOptions smallOptions() {
  JournalOptions options;
  options.capacityBytes = 64 * 1024;
  options.maxRecordBytes = 16 * 1024;
  return options;
}

std::shared_ptr<bm::Region> journalRegion(const JournalOptions& options) {
  return bmtest::anonymousRegion(Journal::regionBytesFor(options.capacityBytes));
}

// Reads everything from `fromSequence` and compares it with the model, record by record.
void checkReadMatches(Journal& journal, const std::deque<ModelRecord>& model, size_t fromIndex,
                      size_t maxRecords, uint64_t payloadCapacity) {
  std::vector<JournalRecord> records(maxRecords + 1);
  std::vector<uint8_t> payload(payloadCapacity + 1);
  const uint64_t fromSequence =
      fromIndex < model.size() ? model[fromIndex].sequence : journal.nextSequence();
  const size_t copied =
      journal.readFrom(fromSequence, maxRecords, records.data(), payload.data(), payloadCapacity);
  CHECK(copied <= maxRecords);
  CHECK(copied <= model.size() - fromIndex);
  uint64_t payloadUsed = 0;
  for (size_t i = 0; i < copied; i++) {
    const ModelRecord& expected = model[fromIndex + i];
    const JournalRecord& record = records[i];
    CHECK_EQ(record.sequence, expected.sequence);
    CHECK(record.kind == expected.kind);
    CHECK_EQ(record.volumeId, expected.volumeId);
    CHECK_EQ(record.byteOffset, expected.byteOffset);
    CHECK_EQ(record.byteLength, expected.byteLength);
    CHECK_EQ(record.flags, expected.flags);
    CHECK_EQ(record.payloadBytes, static_cast<uint32_t>(expected.payload.size()));
    CHECK_EQ(record.payloadOffset, payloadUsed);
    CHECK(expected.payload.empty() ||
          std::memcmp(payload.data() + record.payloadOffset, expected.payload.data(),
                      expected.payload.size()) == 0);
    payloadUsed += record.payloadBytes;
  }
  CHECK(payloadUsed <= payloadCapacity);
  // It stops only for a reason: the count, the end, or the next payload not fitting.
  const size_t next = fromIndex + copied;
  if (copied < maxRecords && next < model.size()) {
    CHECK(payloadUsed + model[next].payload.size() > payloadCapacity);
  }
}

// Finds the ring offset of the record header with this sequence (scan of 8-aligned offsets).
uint64_t findRecord(const bm::Region& region, uint64_t capacityBytes, uint64_t sequence) {
  const uint8_t* ring = region.data() + Journal::kHeaderBytes;
  for (uint64_t offset = 0; offset + 48 <= capacityBytes; offset += 8) {
    uint32_t magic;
    uint64_t recordSequence;
    uint16_t kind;
    std::memcpy(&magic, ring + offset, 4);
    std::memcpy(&recordSequence, ring + offset + 8, 8);
    std::memcpy(&kind, ring + offset + 36, 2);
    if (magic == 0x524A4D42u && recordSequence == sequence && kind != 0xFFFF) return offset;
  }
  return UINT64_MAX;
}

}  // namespace

TEST(journal_random_operations_match_a_deque_model) {
  auto random = bmtest::seededRandom("journal-model");
  const JournalOptions options = smallOptions();
  auto region = journalRegion(options);
  auto journal = Journal::create(region, options);
  std::deque<ModelRecord> model;
  uint64_t modelRecordBytes = 0;  // ring bytes of the records alone (fillers not counted)
  uint64_t nextSequence = 1;
  uint64_t appendedBytes = 0;
  uint64_t fullCount = 0;
  for (int step = 0; step < 20000; step++) {
    const int operation = static_cast<int>(random() % 100);
    if (operation < 55) {
      // Mostly small payloads, some near the limit, some empty (zero/trim records).
      uint32_t payloadBytes;
      const int shape = static_cast<int>(random() % 10);
      if (shape < 6) {
        payloadBytes = static_cast<uint32_t>(random() % 600);
      } else if (shape < 9) {
        payloadBytes = static_cast<uint32_t>(random() % (options.maxRecordBytes + 1));
      } else {
        payloadBytes = 0;
      }
      ModelRecord record{0,
                         payloadBytes == 0 ? RecordKind::Trim : RecordKind::Write,
                         random() % 4 + 1,
                         random() % (uint64_t{1} << 40),
                         payloadBytes == 0 ? static_cast<uint32_t>(random()) : payloadBytes,
                         static_cast<uint16_t>(random()),
                         std::vector<uint8_t>(payloadBytes)};
      for (auto& byte : record.payload) byte = static_cast<uint8_t>(random());
      const bool roomBefore = journal->hasRoomFor(payloadBytes);
      const uint64_t sequence =
          journal->append(record.kind, record.volumeId, record.byteOffset, record.byteLength,
                          record.payload.data(), payloadBytes, record.flags);
      const uint64_t bytesOfRecord = Journal::recordBytes(payloadBytes);
      CHECK_EQ(sequence != 0, roomBefore);
      if (sequence == 0) {
        fullCount++;
        // Full is only allowed when the records (plus at most one filler and the unusable end)
        // leave too little room.
        CHECK(!model.empty());
        CHECK(modelRecordBytes + bytesOfRecord + 2 * (options.maxRecordBytes + 56) >
              options.capacityBytes);
      } else {
        CHECK_EQ(sequence, nextSequence);
        record.sequence = sequence;
        nextSequence++;
        modelRecordBytes += bytesOfRecord;
        appendedBytes += bytesOfRecord;
        model.push_back(std::move(record));
      }
    } else if (operation < 75) {
      if (model.empty()) continue;
      const size_t fromIndex = random() % (model.size() + 1);
      const size_t maxRecords = 1 + random() % 20;
      const uint64_t payloadCapacity = random() % 2 == 0 ? options.maxRecordBytes : random() % 40000;
      checkReadMatches(*journal, model, fromIndex, maxRecords, payloadCapacity);
    } else if (operation < 95) {
      if (model.empty()) continue;
      const size_t releaseCount = 1 + random() % model.size();
      const uint64_t through = model[releaseCount - 1].sequence;
      CHECK_EQ(journal->release(through), static_cast<uint64_t>(releaseCount));
      for (size_t i = 0; i < releaseCount; i++) {
        modelRecordBytes -= Journal::recordBytes(static_cast<uint32_t>(model.front().payload.size()));
        model.pop_front();
      }
    } else if (operation < 97) {
      // Reopen from the same region: the cursors come from the header.
      journal->close();
      journal = Journal::open(region);
      CHECK_EQ(journal->recoveredCutCount(), 0u);
    } else {
      const auto stats = journal->stats();
      CHECK_EQ(stats.nextSequence, nextSequence);
      CHECK_EQ(stats.headSequence, model.empty() ? nextSequence : model.front().sequence);
      CHECK_EQ(stats.recordCount, static_cast<uint64_t>(model.size()));
      CHECK(stats.usedBytes >= modelRecordBytes);
      CHECK(stats.usedBytes <= stats.capacityBytes);
      const uint64_t headSequence = stats.headSequence;
      JournalRecord record;
      uint8_t payload[1];
      if (headSequence > 1) {
        CHECK_THROWS_CODE(journal->readFrom(headSequence - 1, 1, &record, payload, 0),
                          ERR_JOURNAL_RELEASED);
      }
      CHECK_THROWS_CODE(journal->readFrom(nextSequence + 1, 1, &record, payload, 0),
                        ERR_JOURNAL_NOT_YET);
    }
  }
  // The ring went around many times and filled up now and then.
  CHECK(appendedBytes > 20 * options.capacityBytes);
  CHECK(fullCount > 0);
  std::printf("    %llu bytes appended through a %llu-byte ring, %llu full\n",
              static_cast<unsigned long long>(appendedBytes),
              static_cast<unsigned long long>(options.capacityBytes),
              static_cast<unsigned long long>(fullCount));
}

TEST(journal_sequences_start_at_one_and_survive_release_and_reopen) {
  const JournalOptions options = smallOptions();
  auto region = journalRegion(options);
  auto journal = Journal::create(region, options);
  CHECK_EQ(journal->headSequence(), 1u);
  CHECK_EQ(journal->nextSequence(), 1u);
  CHECK_EQ(journal->append(RecordKind::Write, 7, 0, 3, "abc", 3), 1u);
  CHECK_EQ(journal->append(RecordKind::Zero, 7, 4096, 8192, nullptr, 0), 2u);
  CHECK_EQ(journal->release(2), 2u);
  CHECK_EQ(journal->release(2), 0u);
  CHECK_EQ(journal->headSequence(), 3u);
  journal.reset();
  auto reopened = Journal::open(region);
  CHECK_EQ(reopened->nextSequence(), 3u);
  CHECK_EQ(reopened->headSequence(), 3u);
  CHECK_EQ(reopened->append(RecordKind::Marker, 7, 0, 0, nullptr, 0), 3u);
  CHECK_EQ(reopened->release(100), 1u);  // clamped to what exists
  CHECK_EQ(reopened->append(RecordKind::Write, 7, 0, 1, "z", 1), 4u);
}

TEST(journal_id_and_intents_survive_reopen) {
  JournalOptions options = smallOptions();
  options.id = 0x1234567890ABull;
  auto region = journalRegion(options);
  auto journal = Journal::create(region, options);
  CHECK_EQ(journal->id(), 0x1234567890ABull);
  CHECK(journal->pendingIntents().empty());
  // A writer listed two ranges and died before its records: a reopen finds both.
  journal->setIntent(0, bm::JournalIntent{7, 4096, 8192, RecordKind::Write});
  journal->setIntent(1, bm::JournalIntent{8, 0, 1u << 20, RecordKind::Trim});
  journal->publishIntents(2);
  {
    auto reopened = Journal::open(region);
    CHECK_EQ(reopened->id(), 0x1234567890ABull);
    const auto& intents = reopened->pendingIntents();
    REQUIRE(intents.size() == 2u);
    CHECK_EQ(intents[0].volumeId, 7u);
    CHECK_EQ(intents[0].byteOffset, 4096u);
    CHECK_EQ(intents[0].byteLength, 8192u);
    CHECK(intents[0].kind == RecordKind::Write);
    CHECK_EQ(intents[1].volumeId, 8u);
    CHECK(intents[1].kind == RecordKind::Trim);
    reopened->clearPendingIntents();
    CHECK(reopened->pendingIntents().empty());
  }
  // An emptied list is found empty.
  journal->publishIntents(0);
  CHECK(Journal::open(region)->pendingIntents().empty());
  // A journal from before ids (the id's checksum fails) has id 0.
  region->data()[200] ^= 0xFF;
  CHECK_EQ(Journal::open(region)->id(), 0u);
  // A damaged count takes at most the whole area, never past it.
  const uint32_t huge = 1000;
  std::memcpy(region->data() + 256, &huge, sizeof huge);
  CHECK_EQ(Journal::open(region)->pendingIntents().size(), static_cast<size_t>(Journal::kMaxIntents));
}

TEST(journal_read_edges_released_not_yet_and_empty) {
  const JournalOptions options = smallOptions();
  auto journal = Journal::create(journalRegion(options), options);
  JournalRecord records[4];
  uint8_t payload[64];
  CHECK_EQ(journal->readFrom(1, 4, records, payload, sizeof payload), 0u);  // exactly next
  CHECK_THROWS_CODE(journal->readFrom(2, 4, records, payload, sizeof payload), ERR_JOURNAL_NOT_YET);
  for (int i = 0; i < 3; i++) journal->append(RecordKind::Write, 1, i * 10, 10, "0123456789", 10);
  journal->release(1);
  CHECK_THROWS_CODE(journal->readFrom(1, 4, records, payload, sizeof payload), ERR_JOURNAL_RELEASED);
  CHECK_THROWS_CODE(journal->readFrom(0, 4, records, payload, sizeof payload), ERR_JOURNAL_RELEASED);
  CHECK_EQ(journal->readFrom(4, 4, records, payload, sizeof payload), 0u);
  CHECK_THROWS_CODE(journal->readFrom(5, 4, records, payload, sizeof payload), ERR_JOURNAL_NOT_YET);
  // The payload capacity bounds the batch; a first record that does not fit returns nothing.
  CHECK_EQ(journal->readFrom(2, 4, records, payload, 15), 1u);
  CHECK_EQ(journal->readFrom(2, 4, records, payload, 9), 0u);
  CHECK_EQ(journal->readFrom(2, 1, records, payload, sizeof payload), 1u);
  CHECK_EQ(journal->readFrom(2, 4, records, payload, sizeof payload), 2u);
  CHECK_EQ(records[1].sequence, 3u);
  CHECK_EQ(records[1].payloadOffset, 10u);
}

TEST(journal_full_never_overwrites_and_recovers_after_release) {
  const JournalOptions options = smallOptions();
  auto journal = Journal::create(journalRegion(options), options);
  std::vector<uint8_t> data(8000, 0x5A);
  uint64_t last = 0;
  while (true) {
    const uint64_t sequence = journal->append(RecordKind::Write, 1, 0, 8000, data.data(), 8000);
    if (sequence == 0) break;
    last = sequence;
  }
  CHECK_EQ(last, 8u);  // 8 records of 8048 bytes fit in 65536
  CHECK_EQ(journal->append(RecordKind::Write, 1, 0, 8000, data.data(), 8000), 0u);
  CHECK_EQ(journal->stats().fullCount, 2u);
  CHECK(!journal->hasRoomFor(8000));
  // Everything is still readable after the refusals.
  std::vector<JournalRecord> records(16);
  std::vector<uint8_t> payload(16 * 8000);
  CHECK_EQ(journal->readFrom(1, 16, records.data(), payload.data(), payload.size()), 8u);
  journal->release(1);
  // The freed space is at the ring start; the record needs a WRAP filler first.
  CHECK(journal->hasRoomFor(8000));
  CHECK_EQ(journal->append(RecordKind::Write, 1, 0, 8000, data.data(), 8000), 9u);
  CHECK_EQ(journal->readFrom(2, 16, records.data(), payload.data(), payload.size()), 8u);
  CHECK_EQ(records[7].sequence, 9u);
  CHECK_THROWS_CODE(journal->append(RecordKind::Write, 1, 0, 1, data.data(), 16 * 1024 + 1),
                    ERR_JOURNAL_RECORD_TOO_LARGE);
  CHECK_THROWS_AS(journal->append(RecordKind::Write, 1, 0, 1, nullptr, 1), bm::ArgumentError);
  CHECK_THROWS_AS(journal->append(RecordKind::Wrap, 1, 0, 0, nullptr, 0), bm::ArgumentError);
}

TEST(journal_options_and_headers_are_validated) {
  JournalOptions options = smallOptions();
  options.capacityBytes = 32 * 1024;
  CHECK_THROWS_AS(Journal::create(bmtest::anonymousRegion(1 << 20), options), bm::RangeError);
  options = smallOptions();
  options.maxRecordBytes = options.capacityBytes / 4 + 1;
  CHECK_THROWS_AS(Journal::create(bmtest::anonymousRegion(1 << 20), options), bm::RangeError);
  options = smallOptions();
  CHECK_THROWS_CODE(Journal::create(bmtest::anonymousRegion(64 * 1024), options), ERR_REGION_TOO_SMALL);
  CHECK_THROWS_AS(Journal::create(nullptr, options), bm::ArgumentError);
  CHECK_THROWS_CODE(Journal::open(bmtest::anonymousRegion(1 << 20)), ERR_JOURNAL_BAD_HEADER);
  auto region = journalRegion(options);
  Journal::create(region, options);
  region->data()[20] ^= 1;  // ring size, covered by the header checksum
  CHECK_THROWS_CODE(Journal::open(region), ERR_JOURNAL_BAD_HEADER);
}

TEST(journal_close_is_idempotent_and_later_use_throws) {
  const JournalOptions options = smallOptions();
  auto journal = Journal::create(journalRegion(options), options);
  journal->close();
  journal->close();
  CHECK(journal->closed());
  CHECK_THROWS_CODE(journal->append(RecordKind::Write, 1, 0, 1, "x", 1), ERR_JOURNAL_CLOSED);
  CHECK_THROWS_CODE(journal->stats(), ERR_JOURNAL_CLOSED);
  CHECK_THROWS_CODE(journal->release(1), ERR_JOURNAL_CLOSED);
}

TEST(journal_checksum_corruption_is_detected_on_read) {
  const JournalOptions options = smallOptions();
  auto region = journalRegion(options);
  auto journal = Journal::create(region, options);
  journal->append(RecordKind::Write, 1, 0, 5, "hello", 5);
  journal->append(RecordKind::Write, 1, 5, 5, "world", 5);
  JournalRecord records[2];
  uint8_t payload[16];
  CHECK_EQ(journal->readFrom(1, 2, records, payload, sizeof payload), 2u);
  uint8_t* ring = region->data() + Journal::kHeaderBytes;
  const uint64_t second = findRecord(*region, options.capacityBytes, 2);
  REQUIRE(second != UINT64_MAX);
  ring[second + 48 + 1] ^= 0x40;  // payload byte of record 2
  CHECK_THROWS_CODE(journal->readFrom(2, 2, records, payload, sizeof payload), ERR_JOURNAL_CHECKSUM);
  CHECK_EQ(journal->readFrom(1, 1, records, payload, sizeof payload), 1u);  // record 1 is fine
  // Unverified, the damaged copy comes out with the CRC it was appended with (a receiver that
  // checks it finds the mismatch): the stored CRC no longer matches the bytes.
  CHECK_EQ(journal->readFrom(2, 1, records, payload, sizeof payload, 0, UINT64_MAX, false), 1u);
  CHECK(records[0].dataCrc != bm::crc32c(0, payload, 5));
  CHECK_EQ(records[0].dataCrc, bm::crc32c(0, "world", 5));
  ring[second + 48 + 1] ^= 0x40;
  ring[second + 24] ^= 0x01;  // byteOffset field of record 2's header
  CHECK_THROWS_CODE(journal->readFrom(1, 2, records, payload, sizeof payload), ERR_JOURNAL_CHECKSUM);
  // Release walks the headers too, and refuses without moving the cursors.
  journal->append(RecordKind::Write, 1, 10, 1, "!", 1);
  CHECK_THROWS_CODE(journal->release(2), ERR_JOURNAL_CHECKSUM);
  CHECK_EQ(journal->headSequence(), 1u);
}

TEST(journal_complete_unpublished_record_is_adopted_and_torn_one_cut) {
  const JournalOptions options = smallOptions();
  auto region = journalRegion(options);
  auto journal = Journal::create(region, options);
  for (int i = 0; i < 5; i++) journal->append(RecordKind::Write, 1, i, 4, "data", 4);
  // Simulate a crash after writing record 6 but before publishing its cursors: keep the header
  // as it was before the append.
  std::vector<uint8_t> header(region->data(), region->data() + Journal::kHeaderBytes);
  CHECK_EQ(journal->append(RecordKind::Write, 1, 5, 4, "six!", 4), 6u);
  std::memcpy(region->data(), header.data(), header.size());
  journal->close();
  journal = Journal::open(region);
  CHECK_EQ(journal->nextSequence(), 7u);
  CHECK_EQ(journal->recoveredCutCount(), 0u);
  JournalRecord records[8];
  uint8_t payload[64];
  CHECK_EQ(journal->readFrom(6, 8, records, payload, sizeof payload), 1u);
  CHECK(std::memcmp(payload, "six!", 4) == 0);

  // Now the crash tears record 7's header: it is cut, and its sequence (never returned to a
  // caller in a real crash) is assigned again.
  std::memcpy(header.data(), region->data(), header.size());
  CHECK_EQ(journal->append(RecordKind::Write, 1, 6, 4, "7777", 4), 7u);
  std::memcpy(region->data(), header.data(), header.size());
  const uint64_t torn = findRecord(*region, options.capacityBytes, 7);
  REQUIRE(torn != UINT64_MAX);
  region->data()[Journal::kHeaderBytes + torn + 44] ^= 0x10;  // payloadBytes: header CRC fails
  journal->close();
  journal = Journal::open(region);
  CHECK_EQ(journal->nextSequence(), 7u);
  CHECK_EQ(journal->recoveredCutCount(), 1u);
  CHECK_EQ(journal->readFrom(1, 8, records, payload, sizeof payload), 6u);
  CHECK_EQ(journal->append(RecordKind::Write, 1, 6, 4, "new7", 4), 7u);
  CHECK_EQ(journal->readFrom(7, 8, records, payload, sizeof payload), 1u);
  CHECK(std::memcmp(payload, "new7", 4) == 0);
}

TEST(journal_torn_cursor_slot_falls_back_to_the_previous_generation) {
  const JournalOptions options = smallOptions();
  auto region = journalRegion(options);
  auto journal = Journal::create(region, options);
  for (int i = 0; i < 4; i++) journal->append(RecordKind::Write, 1, i, 1, "x", 1);
  journal->release(2);
  // Tear the newest slot (the release's): open() uses the older one, from before the release.
  uint64_t generation[2];
  std::memcpy(&generation[0], region->data() + 64, 8);
  std::memcpy(&generation[1], region->data() + 128, 8);
  const uint64_t newest = generation[0] > generation[1] ? 64 : 128;
  region->data()[newest + 50] ^= 0xFF;
  journal->close();
  journal = Journal::open(region);
  CHECK_EQ(journal->headSequence(), 1u);  // the release is undone: records are re-shipped
  CHECK_EQ(journal->nextSequence(), 5u);
  // Both slots torn: not a journal any more.
  journal->close();
  region->data()[64 + 50] ^= 0x0F;
  region->data()[128 + 50] ^= 0x0F;
  CHECK_THROWS_CODE(Journal::open(region), ERR_JOURNAL_BAD_HEADER);
}

TEST(journal_damaged_published_record_drops_the_backlog_on_open) {
  const JournalOptions options = smallOptions();
  auto region = journalRegion(options);
  auto journal = Journal::create(region, options);
  for (int i = 0; i < 6; i++) journal->append(RecordKind::Write, 1, i, 2, "ab", 2);
  const uint64_t third = findRecord(*region, options.capacityBytes, 3);
  REQUIRE(third != UINT64_MAX);
  region->data()[Journal::kHeaderBytes + third + 16] ^= 1;
  journal->close();
  journal = Journal::open(region);
  // Sequences are not reused; readers behind the loss are told their records are gone.
  CHECK_EQ(journal->nextSequence(), 7u);
  CHECK_EQ(journal->headSequence(), 7u);
  CHECK_EQ(journal->recoveredCutCount(), 6u);
  JournalRecord record;
  uint8_t payload[4];
  CHECK_THROWS_CODE(journal->readFrom(4, 1, &record, payload, sizeof payload), ERR_JOURNAL_RELEASED);
  CHECK_EQ(journal->append(RecordKind::Write, 1, 0, 2, "cd", 2), 7u);
}

TEST(journal_named_journal_continues_in_another_process) {
  bmtest::SharedName name("journal");
  const JournalOptions options = smallOptions();
  const uint64_t regionBytes = Journal::regionBytesFor(options.capacityBytes);
  {
    auto region = bmtest::sharedRegion(name.str(), regionBytes, true, false);
    auto journal = Journal::create(region, options);
    CHECK_EQ(journal->append(RecordKind::Write, 9, 0, 3, "one", 3), 1u);
  }
  std::fflush(nullptr);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    int status = 1;
    try {
      auto region = bmtest::sharedRegion(name.str(), 0, false, true);
      auto journal = Journal::open(region);
      if (journal->nextSequence() == 2 && journal->append(RecordKind::Write, 9, 3, 3, "two", 3) == 2 &&
          journal->append(RecordKind::Write, 9, 6, 5, "three", 5) == 3) {
        status = 0;
      }
    } catch (...) {
    }
    _exit(status);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  REQUIRE(WIFEXITED(status));
  CHECK_EQ(WEXITSTATUS(status), 0);
  auto region = bmtest::sharedRegion(name.str(), 0, false, true);
  auto journal = Journal::open(region);
  CHECK_EQ(journal->nextSequence(), 4u);
  JournalRecord records[4];
  uint8_t payload[32];
  CHECK_EQ(journal->readFrom(1, 4, records, payload, sizeof payload), 3u);
  CHECK(std::memcmp(payload + records[2].payloadOffset, "three", 5) == 0);
  CHECK_EQ(journal->append(RecordKind::Write, 9, 11, 4, "four", 4), 4u);
}

BM_TEST_MAIN()
