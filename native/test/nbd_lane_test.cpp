// The NBD native lane (nbd_lane.hpp) over a real socketpair: the client end is driven by hand.
// Reads and writes reach the volume and are answered (simple and structured), a large write is
// received straight into the store and marks a recording bitmap, FUA and FLUSH flush, requests
// the lane does not serve (BLOCK_STATUS without base:allocation alone, a bad magic, an invalid
// range) end it with HandBack at that request's header with every earlier request answered, a
// client that vanishes mid-payload gets nothing acknowledged, DISC and EOF end it as the
// client's, and stop() wakes a lane blocked in recv. Replies from the allocation map:
// nbd_lane_extents_test.cpp; a replicated volume's gated lane: nbd_lane_gate_test.cpp.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "nbd_lane_test_support.hpp"

using namespace nbdlanetest;

TEST(nbd_lane_serves_writes_reads_flush_and_disc) {
  auto volume = makeVolume(4 * kMiB);
  Pair pair;
  Running running(volume, optionsFor(pair.server, 4 * kMiB));
  std::vector<uint8_t> payload(4096);
  for (size_t i = 0; i < payload.size(); i++) payload[i] = static_cast<uint8_t>(i * 7 + 1);
  auto write = request(1, 1 /* FUA */, 0x1122334455667788ull, 8192, 4096);
  write.insert(write.end(), payload.begin(), payload.end());
  sendAll(pair.client, write);
  CHECK_EQ(simpleReply(pair.client, 0x1122334455667788ull), 0u);
  std::vector<uint8_t> stored(4096);
  volume->read(8192, stored.data(), 4096);
  CHECK(stored == payload);
  // Two requests in one send: a read and a flush, answered in order.
  auto both = request(0, 0, 2, 8192, 4096);
  auto flush = request(3, 0, 3, 0, 0);
  both.insert(both.end(), flush.begin(), flush.end());
  sendAll(pair.client, both);
  CHECK_EQ(simpleReply(pair.client, 2), 0u);
  CHECK(receiveExactly(pair.client, 4096) == payload);
  CHECK_EQ(simpleReply(pair.client, 3), 0u);
  sendAll(pair.client, request(2, 0, 4, 0, 0));
  CHECK(running.join() == NbdLaneEnd::Client);
  CHECK_EQ(running.lane->counter(bm::kLaneRequests + 1), 1u);
  CHECK_EQ(running.lane->counter(bm::kLaneRequests + 0), 1u);
  CHECK_EQ(running.lane->counter(bm::kLaneBytesWritten), 4096u);
  CHECK(volume->stats().flushCount >= 2);
}

TEST(nbd_lane_structured_read_is_one_offset_data_chunk) {
  auto volume = makeVolume(4 * kMiB);
  std::vector<uint8_t> data(512, 0xab);
  volume->write(1024, data.data(), data.size());
  Pair pair;
  Running running(volume, optionsFor(pair.server, 4 * kMiB, true));
  sendAll(pair.client, request(0, 0, 9, 1024, 512));
  auto chunk = receiveExactly(pair.client, 28 + 512);
  CHECK_EQ(get32(chunk.data()), 0x668e33efu);
  CHECK_EQ((uint32_t{chunk[4]} << 8 | chunk[5]), 1u);  // DONE
  CHECK_EQ((uint32_t{chunk[6]} << 8 | chunk[7]), 1u);  // OFFSET_DATA
  CHECK_EQ(get64(chunk.data() + 8), 9u);
  CHECK_EQ(get32(chunk.data() + 16), 8u + 512u);
  CHECK_EQ(get64(chunk.data() + 20), 1024u);
  CHECK(std::vector<uint8_t>(chunk.begin() + 28, chunk.end()) == data);
  clientCloses(pair, running);
}

TEST(nbd_lane_large_write_lands_in_the_store_and_marks_the_bitmap) {
  auto volume = makeVolume(8 * kMiB);
  auto bitmap = volume->createBitmap("b", 64 * 1024, true);
  Pair pair;
  Running running(volume, optionsFor(pair.server, 8 * kMiB));
  std::vector<uint8_t> payload(1 * kMiB);
  for (size_t i = 0; i < payload.size(); i++) payload[i] = static_cast<uint8_t>(i >> 9);
  auto write = request(1, 0, 5, 2 * kMiB, static_cast<uint32_t>(payload.size()));
  sendAll(pair.client, write);
  // The payload in pieces, so the lane waits inside it.
  for (size_t at = 0; at < payload.size(); at += 100000) {
    sendAll(pair.client, std::vector<uint8_t>(payload.begin() + static_cast<std::ptrdiff_t>(at),
                                              payload.begin() + static_cast<std::ptrdiff_t>(std::min(payload.size(), at + 100000))));
  }
  CHECK_EQ(simpleReply(pair.client, 5), 0u);
  std::vector<uint8_t> stored(payload.size());
  volume->read(2 * kMiB, stored.data(), stored.size());
  CHECK(stored == payload);
  CHECK_EQ(running.lane->counter(bm::kLaneStoreReceivedWrites), 1u);
  CHECK(bitmap->test((2 * kMiB) / (64 * 1024)));
  clientCloses(pair, running);
}

TEST(nbd_lane_torn_large_write_is_never_acknowledged) {
  auto volume = makeVolume(8 * kMiB);
  auto bitmap = volume->createBitmap("b", 64 * 1024, true);
  Pair pair;
  Running running(volume, optionsFor(pair.server, 8 * kMiB));
  auto write = request(1, 0, 6, 4 * kMiB, static_cast<uint32_t>(kMiB));
  write.resize(write.size() + 300000, 0x5a);
  sendAll(pair.client, write);
  ::shutdown(pair.client, SHUT_WR);
  CHECK(running.join() == NbdLaneEnd::Truncated);
  CHECK_EQ(running.lane->counter(bm::kLaneProtocolErrors), 1u);
  // Nothing came back, and the range is marked (conservative).
  uint8_t byte = 0;
  CHECK_EQ(::recv(pair.client, &byte, 1, 0), 0);
  CHECK(bitmap->test((4 * kMiB) / (64 * 1024)));
  CHECK(bitmap->test((5 * kMiB - 1) / (64 * 1024)));
}

TEST(nbd_lane_hands_back_at_the_first_request_it_does_not_serve) {
  auto volume = makeVolume(4 * kMiB);
  struct Case {
    std::vector<uint8_t> header;
  };
  const std::vector<Case> cases = {
      {request(7, 0, 11, 0, 4096)},                 // BLOCK_STATUS
      {request(0, 0, 11, 0, 4096, 0x12345678)},     // bad magic
      {request(0, 0, 11, 4 * kMiB - 512, 4096)},    // past the end
      {request(0, 0x40, 11, 0, 4096)},              // unknown flag
      {request(0, 0, 11, 0, 0)},                    // zero length
      {request(3, 0, 11, 0, 1)},                    // FLUSH with a length
      {request(9, 0, 11, 0, 1)},                    // unknown command
  };
  for (const Case& c : cases) {
    Pair pair;
    Running running(volume, optionsFor(pair.server, 4 * kMiB));
    auto bytes = request(0, 0, 10, 0, 512);
    bytes.insert(bytes.end(), c.header.begin(), c.header.end());
    bytes.push_back(0xee);  // a byte of whatever follows travels back too
    sendAll(pair.client, bytes);
    CHECK_EQ(simpleReply(pair.client, 10), 0u);
    receiveExactly(pair.client, 512);
    CHECK(running.join() == NbdLaneEnd::HandBack);
    std::vector<uint8_t> expected = c.header;
    expected.push_back(0xee);
    // The rest may still be in flight when the lane stopped reading: whatever it read is given back in order.
    const auto& back = running.lane->handBackBytes();
    CHECK(back.size() <= expected.size() && back.size() >= 28);
    CHECK(std::equal(back.begin(), back.end(), expected.begin()));
    // The socket stays open (the caller's).
    CHECK(::send(pair.server, "x", 1, MSG_NOSIGNAL) == 1);
    ::close(pair.server);
  }
}

TEST(nbd_lane_read_only_export_hands_writes_back) {
  auto volume = makeVolume(4 * kMiB);
  Pair pair;
  auto options = optionsFor(pair.server, 4 * kMiB);
  options.transmissionFlags |= 1 << 1;
  Running running(volume, options);
  auto write = request(1, 0, 12, 0, 512);
  write.resize(write.size() + 512, 1);
  sendAll(pair.client, write);
  CHECK(running.join() == NbdLaneEnd::HandBack);
  CHECK_EQ(running.lane->handBackBytes().size() >= 28, true);
  std::vector<uint8_t> stored(512);
  volume->read(0, stored.data(), stored.size());
  CHECK(stored == std::vector<uint8_t>(512, 0));
  ::close(pair.server);
}

TEST(nbd_lane_stop_wakes_a_lane_blocked_in_recv) {
  auto volume = makeVolume(4 * kMiB);
  Pair pair;
  Running running(volume, optionsFor(pair.server, 4 * kMiB));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  running.lane->stop(false);
  CHECK(running.join() == NbdLaneEnd::Server);
  uint8_t byte = 0;
  CHECK_EQ(::recv(pair.client, &byte, 1, 0), 0);
}

TEST(nbd_lane_graceful_stop_answers_eshutdown_half_closes_and_waits_for_the_client) {
  auto volume = makeVolume(4 * kMiB);
  Pair pair;
  Running running(volume, optionsFor(pair.server, 4 * kMiB));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  running.lane->stop(true);
  // A request that arrives now is answered ESHUTDOWN and changes nothing.
  auto write = request(1, 0, 51, 0, 4096);
  write.resize(write.size() + 4096, 0x55);
  sendAll(pair.client, write);
  CHECK_EQ(simpleReply(pair.client, 51), 108u);
  // Then the half-close (EOF for the client) while the lane waits for the client to hang up.
  uint8_t byte = 0;
  CHECK_EQ(::recv(pair.client, &byte, 1, 0), 0);
  std::vector<uint8_t> bytes(4096);
  volume->read(0, bytes.data(), bytes.size());
  CHECK(std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; }));
  ::close(pair.client);
  pair.client = -1;
  CHECK(running.join() == NbdLaneEnd::Server);
}

TEST(nbd_lane_copy_mode_buffers_large_payloads) {
  auto volume = makeVolume(8 * kMiB);
  Pair pair;
  auto options = optionsFor(pair.server, 8 * kMiB);
  options.directWrites = false;
  Running running(volume, options);
  auto write = request(1, 0, 61, kMiB, static_cast<uint32_t>(kMiB));
  write.resize(write.size() + kMiB, 0x66);
  sendAll(pair.client, write);
  CHECK_EQ(simpleReply(pair.client, 61), 0u);
  CHECK_EQ(running.lane->counter(bm::kLaneStoreReceivedWrites), 0u);
  std::vector<uint8_t> bytes(kMiB);
  volume->read(kMiB, bytes.data(), bytes.size());
  CHECK(std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0x66; }));
  // A torn payload in copy mode never reaches the store.
  auto torn = request(1, 0, 62, 4 * kMiB, static_cast<uint32_t>(kMiB));
  torn.resize(torn.size() + 200000, 0x77);
  sendAll(pair.client, torn);
  ::shutdown(pair.client, SHUT_WR);
  CHECK(running.join() == NbdLaneEnd::Truncated);
  volume->read(4 * kMiB, bytes.data(), bytes.size());
  CHECK(std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0; }));
}

TEST(nbd_lane_leftover_bytes_are_served_first) {
  auto volume = makeVolume(4 * kMiB);
  Pair pair;
  auto options = optionsFor(pair.server, 4 * kMiB);
  options.leftover = request(0, 0, 21, 0, 512);
  Running running(volume, options);
  CHECK_EQ(simpleReply(pair.client, 21), 0u);
  receiveExactly(pair.client, 512);
  clientCloses(pair, running);
}

TEST(nbd_lane_eof_inside_a_header_is_truncation) {
  auto volume = makeVolume(4 * kMiB);
  Pair pair;
  Running running(volume, optionsFor(pair.server, 4 * kMiB));
  auto write = request(1, 0, 31, 0, 4096);
  write.resize(write.size() + 4096, 0x11);
  sendAll(pair.client, write);
  CHECK_EQ(simpleReply(pair.client, 31), 0u);
  auto partial = request(0, 0, 32, 0, 512);
  partial.resize(10);
  sendAll(pair.client, partial);
  ::shutdown(pair.client, SHUT_WR);
  CHECK(running.join() == NbdLaneEnd::Truncated);
  CHECK_EQ(running.lane->counter(bm::kLaneProtocolErrors), 1u);
  CHECK_EQ(running.lane->counter(bm::kLaneRequests + 1), 1u);
}

TEST(nbd_lane_volume_error_is_an_error_reply_and_changes_nothing) {
  // The lane's own volume object over the region another object owns, as the binding opens it.
  auto owner = makeVolume(4 * kMiB);
  auto laneVolume = std::shared_ptr<Volume>(Volume::open(owner->region()).release());
  Pair pair;
  Running running(laneVolume, optionsFor(pair.server, 4 * kMiB));
  auto write = request(1, 0, 41, 8192, 4096);
  write.resize(write.size() + 4096, 0x22);
  sendAll(pair.client, write);
  CHECK_EQ(simpleReply(pair.client, 41), 0u);
  // A snapshot store is created through the other object: the lane's writes must not bypass it.
  owner->setInterceptorRequired(true);
  auto refused = request(1, 0, 42, 8192, 4096);
  refused.resize(refused.size() + 4096, 0x33);
  sendAll(pair.client, refused);
  CHECK_EQ(simpleReply(pair.client, 42), 5u);  // EIO
  // A large one, received into the store, is refused before any byte lands.
  auto large = request(1, 0, 43, kMiB, static_cast<uint32_t>(kMiB));
  large.resize(large.size() + kMiB, 0x44);
  sendAll(pair.client, large);
  CHECK_EQ(simpleReply(pair.client, 43), 5u);
  std::vector<uint8_t> bytes(4096);
  owner->read(8192, bytes.data(), bytes.size());
  CHECK(std::all_of(bytes.begin(), bytes.end(), [](uint8_t b) { return b == 0x22; }));
  std::vector<uint8_t> big(kMiB);
  owner->read(kMiB, big.data(), big.size());
  CHECK(std::all_of(big.begin(), big.end(), [](uint8_t b) { return b == 0; }));
  CHECK_EQ(running.lane->counter(bm::kLaneErrors), 2u);
  // Reads still work.
  sendAll(pair.client, request(0, 0, 44, 8192, 4096));
  CHECK_EQ(simpleReply(pair.client, 44), 0u);
  CHECK(receiveExactly(pair.client, 4096)[0] == 0x22);
  clientCloses(pair, running);
  // A stop after the end does nothing (the fd is closed; its number may be reused).
  running.lane->stop(false);
}

BM_TEST_MAIN()
