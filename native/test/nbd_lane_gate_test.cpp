// The NBD lane of a replicated volume (a gated lane, lane_gate.hpp) over a real socketpair: it
// journals its writes while the gate is open, hands back at a closed gate and at TRIM,
// WRITE_ZEROES and large writes, needs the journal, and its journal, replayed in order, rebuilds
// exactly the bytes the volume holds after another thread wrote the same blocks under the gate.
#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "lane_gate.hpp"
#include "nbd_lane_test_support.hpp"

using namespace nbdlanetest;

namespace {

// A gated lane over `volume` (journal attached) with `gate`.
NbdLaneOptions gatedOptions(int fd, uint64_t size, std::shared_ptr<bm::LaneGate> gate) {
  NbdLaneOptions options = optionsFor(fd, size);
  options.gate = std::move(gate);
  return options;
}

// Every record of `journal`, in order, applied to a fresh volume of `capacity`.
std::shared_ptr<Volume> replay(bm::Journal& journal, uint64_t capacity) {
  auto copy = makeVolume(capacity);
  std::vector<bm::JournalRecord> records(64);
  std::vector<uint8_t> payload(4 * kMiB);
  uint64_t next = journal.headSequence();
  for (;;) {
    const size_t count = journal.readFrom(next, records.size(), records.data(), payload.data(), payload.size());
    if (count == 0) break;
    for (size_t i = 0; i < count; i++) {
      const bm::JournalRecord& record = records[i];
      REQUIRE(record.kind == bm::RecordKind::Write);
      copy->write(record.byteOffset, payload.data() + record.payloadOffset, record.byteLength);
      next = record.sequence + 1;
    }
  }
  return copy;
}

bool sameBytes(Volume& a, Volume& b, uint64_t capacity) {
  std::vector<uint8_t> left(capacity), right(capacity);
  a.read(0, left.data(), capacity);
  b.read(0, right.data(), capacity);
  return left == right;
}

}  // namespace

TEST(nbd_lane_gated_writes_journal_while_open_and_hand_back_when_closed) {
  auto volume = makeVolume(4 * kMiB);
  auto journal = makeJournal(8 * kMiB);
  volume->attachJournal(journal);
  auto bitmap = volume->createBitmap("pair:p", 64 * 1024, true);
  auto gate = std::make_shared<bm::LaneGate>();
  gate->setOpen(true);
  Pair pair;
  Running running(volume, gatedOptions(pair.server, 4 * kMiB, gate));
  // A payload just under the direct-write size (larger ones are handed back): buffered,
  // then stored and journaled under the gate.
  std::vector<uint8_t> payload(NbdLane::kDirectMinBytes - 4096);
  for (size_t i = 0; i < payload.size(); i++) payload[i] = static_cast<uint8_t>(i * 13 + 5);
  auto write = request(1, 0, 1, kMiB, static_cast<uint32_t>(payload.size()));
  write.insert(write.end(), payload.begin(), payload.end());
  sendAll(pair.client, write);
  CHECK_EQ(simpleReply(pair.client, 1), 0u);
  CHECK_EQ(journal->nextSequence(), 2u);
  CHECK_EQ(running.lane->counter(bm::kLaneStoreReceivedWrites), 0u);
  CHECK(bitmap->test(kMiB / (64 * 1024)));
  // Closed: the next write is handed back whole, with what follows it, and changes nothing.
  gate->setOpen(false);
  auto second = request(1, 0, 2, 2 * kMiB, 4096);
  second.resize(second.size() + 4096, 0x77);
  auto read = request(0, 0, 3, 0, 4096);
  std::vector<uint8_t> both = second;
  both.insert(both.end(), read.begin(), read.end());
  sendAll(pair.client, both);
  CHECK(running.join() == NbdLaneEnd::HandBack);
  CHECK(running.lane->handBackBytes() == both);
  CHECK_EQ(journal->nextSequence(), 2u);
  std::vector<uint8_t> stored(4096, 0xff);
  volume->read(2 * kMiB, stored.data(), stored.size());
  CHECK(std::all_of(stored.begin(), stored.end(), [](uint8_t b) { return b == 0; }));
  ::close(pair.server);
}

TEST(nbd_lane_gated_trim_write_zeroes_and_large_writes_are_handed_back) {
  for (uint16_t type : {uint16_t{4}, uint16_t{6}, uint16_t{1}}) {
    auto volume = makeVolume(4 * kMiB);
    auto journal = makeJournal(8 * kMiB);
    volume->attachJournal(journal);
    auto gate = std::make_shared<bm::LaneGate>();
    gate->setOpen(true);
    Pair pair;
    Running running(volume, gatedOptions(pair.server, 4 * kMiB, gate));
    // A header alone: a large write is handed back before its payload is waited for.
    auto trim = request(type, 0, 4, 0, type == 1 ? NbdLane::kDirectMinBytes : 65536);
    sendAll(pair.client, trim);
    CHECK(running.join() == NbdLaneEnd::HandBack);
    CHECK(running.lane->handBackBytes() == trim);
    CHECK_EQ(journal->nextSequence(), 1u);
    ::close(pair.server);
  }
}

TEST(nbd_lane_gated_lane_needs_the_journal) {
  auto volume = makeVolume(4 * kMiB);
  Pair pair;
  bool threw = false;
  try {
    NbdLane lane(volume, gatedOptions(pair.server, 4 * kMiB, std::make_shared<bm::LaneGate>()));
  } catch (const bm::ArgumentError&) {
    threw = true;
  }
  CHECK(threw);
  ::close(pair.server);
}

TEST(nbd_lane_gate_orders_lane_writes_with_another_writer_and_closes_between_writes) {
  // The lane and this thread write the same blocks at once, each under the gate as the event
  // loop's Volume object does; the journal replayed in order gives exactly the store's bytes.
  constexpr uint64_t kCapacity = 1 * kMiB;
  constexpr size_t kBlocks = 8;
  auto volume = makeVolume(kCapacity);
  auto journal = makeJournal(64 * kMiB);
  volume->attachJournal(journal);
  auto gate = std::make_shared<bm::LaneGate>();
  gate->setOpen(true);
  // The lane's own Volume object over the same region, as the binding opens it.
  auto laneVolume = std::shared_ptr<Volume>(Volume::open(volume->region()).release());
  laneVolume->attachJournal(journal);
  Pair pair;
  Running running(laneVolume, gatedOptions(pair.server, kCapacity, gate));
  constexpr int kLaneWrites = 2000;
  std::thread client([&] {
    for (int i = 0; i < kLaneWrites; i++) {
      auto write = request(1, 0, static_cast<uint64_t>(i), (static_cast<uint64_t>(i) % kBlocks) * 4096, 4096);
      write.resize(write.size() + 4096, static_cast<uint8_t>(1 + i % 100));
      sendAll(pair.client, write);
      CHECK_EQ(simpleReply(pair.client, static_cast<uint64_t>(i)), 0u);
    }
  });
  std::vector<uint8_t> mine(4096);
  for (int i = 0; i < 2000; i++) {
    std::fill(mine.begin(), mine.end(), static_cast<uint8_t>(101 + i % 100));
    std::lock_guard<std::mutex> lock(gate->mutex());
    volume->write((static_cast<uint64_t>(i) % kBlocks) * 4096, mine.data(), mine.size());
  }
  client.join();
  // Closing waits for a lane write in progress; after it, a write is handed back untouched.
  gate->setOpen(false);
  const uint64_t before = journal->nextSequence();
  auto last = request(1, 0, 9999, 0, 4096);
  last.resize(last.size() + 4096, 0xee);
  sendAll(pair.client, last);
  CHECK(running.join() == NbdLaneEnd::HandBack);
  CHECK_EQ(journal->nextSequence(), before);
  CHECK_EQ(before, 1u + kLaneWrites + 2000u);
  auto copy = replay(*journal, kCapacity);
  CHECK(sameBytes(*volume, *copy, kCapacity));
  ::close(pair.server);
}

BM_TEST_MAIN()
