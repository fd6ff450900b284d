// The NBD native lane (nbd_lane.hpp) over a real socketpair: the client end is driven by hand.
// Reads and writes reach the volume and are answered (simple and structured), a large write is
// received straight into the store and marks a recording bitmap, FUA and FLUSH flush, requests
// the lane does not serve (BLOCK_STATUS, a bad magic, an invalid range) end it with HandBack at
// that request's header with every earlier request answered, a client that vanishes mid-payload
// gets nothing acknowledged, DISC and EOF end it as the client's, and stop() wakes a lane blocked
// in recv. A gated lane (a replicated volume's, lane_gate.hpp) journals its writes while the gate
// is open, hands back at a closed gate and at TRIM/WRITE_ZEROES, and its journal, replayed in
// order, rebuilds exactly the bytes the volume holds after another thread wrote the same blocks
// under the gate meanwhile.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <thread>
#include <vector>

#include "check.hpp"
#include "journal.hpp"
#include "lane_gate.hpp"
#include "nbd_lane.hpp"
#include "test_support.hpp"
#include "volume.hpp"

using bm::NbdLane;
using bm::NbdLaneEnd;
using bm::NbdLaneOptions;
using bm::Volume;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

std::shared_ptr<bm::Journal> makeJournal(uint64_t capacityBytes) {
  bm::JournalOptions options;
  options.capacityBytes = capacityBytes;
  options.maxRecordBytes = capacityBytes / 4;
  return bm::Journal::create(bmtest::anonymousRegion(bm::Journal::regionBytesFor(capacityBytes)), options);
}

std::shared_ptr<Volume> makeVolume(uint64_t capacityBytes) {
  auto region = bmtest::anonymousRegion(Volume::regionBytesFor(capacityBytes));
  bm::VolumeOptions options;
  options.capacityBytes = capacityBytes;
  return std::shared_ptr<Volume>(Volume::create(region, options).release());
}

void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
void put64(std::vector<uint8_t>& out, uint64_t v) {
  put32(out, static_cast<uint32_t>(v >> 32));
  put32(out, static_cast<uint32_t>(v));
}
std::vector<uint8_t> request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length, uint32_t magic = 0x25609513) {
  std::vector<uint8_t> out;
  put32(out, magic);
  put16(out, flags);
  put16(out, type);
  put64(out, cookie);
  put64(out, offset);
  put32(out, length);
  return out;
}
uint32_t get32(const uint8_t* p) { return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]; }
uint64_t get64(const uint8_t* p) { return (uint64_t{get32(p)} << 32) | get32(p + 4); }

void sendAll(int fd, const std::vector<uint8_t>& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    REQUIRE(n > 0);
    done += static_cast<size_t>(n);
  }
}
std::vector<uint8_t> receiveExactly(int fd, size_t length) {
  std::vector<uint8_t> bytes(length);
  size_t done = 0;
  while (done < length) {
    const ssize_t n = ::recv(fd, bytes.data() + done, length - done, 0);
    REQUIRE(n > 0);
    done += static_cast<size_t>(n);
  }
  return bytes;
}
// A simple reply: returns its error, checks the cookie.
uint32_t simpleReply(int fd, uint64_t cookie) {
  auto reply = receiveExactly(fd, 16);
  CHECK_EQ(get32(reply.data()), 0x67446698u);
  CHECK_EQ(get64(reply.data() + 8), cookie);
  return get32(reply.data() + 4);
}

struct Pair {
  int client = -1;
  int server = -1;
  Pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    client = fds[0];
    server = fds[1];
  }
  ~Pair() {
    if (client >= 0) ::close(client);
  }
};

struct Running {
  std::unique_ptr<NbdLane> lane;
  std::thread thread;
  NbdLaneEnd end = NbdLaneEnd::Running;
  Running(std::shared_ptr<Volume> volume, NbdLaneOptions options) : lane(new NbdLane(std::move(volume), std::move(options))) {
    thread = std::thread([this] { end = lane->run(); });
  }
  NbdLaneEnd join() {
    thread.join();
    return end;
  }
};

// The client half-closes: the lane ends as the client's.
void clientCloses(Pair& pair, Running& running) {
  ::shutdown(pair.client, SHUT_WR);
  CHECK(running.join() == NbdLaneEnd::Client);
}

NbdLaneOptions optionsFor(int fd, uint64_t size, bool structured = false) {
  NbdLaneOptions options;
  options.fd = fd;
  options.structured = structured;
  options.transmissionFlags = 1 | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
  options.sizeBytes = size;
  return options;
}

}  // namespace

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

// One structured reply chunk as the client sees it.
struct Chunk {
  uint16_t flags;
  uint16_t type;
  uint64_t offset;
  uint64_t length;  // data bytes, or the hole's size
  std::vector<uint8_t> data;
};
std::vector<Chunk> readChunks(int fd, uint64_t cookie) {
  std::vector<Chunk> chunks;
  for (;;) {
    auto header = receiveExactly(fd, 20);
    CHECK_EQ(get32(header.data()), 0x668e33efu);
    CHECK_EQ(get64(header.data() + 8), cookie);
    Chunk chunk{static_cast<uint16_t>(header[4] << 8 | header[5]), static_cast<uint16_t>(header[6] << 8 | header[7]), 0, 0, {}};
    auto payload = receiveExactly(fd, get32(header.data() + 16));
    chunk.offset = get64(payload.data());
    if (chunk.type == 2) {
      CHECK_EQ(payload.size(), 12u);
      chunk.length = get32(payload.data() + 8);
    } else {
      CHECK_EQ(chunk.type, 1u);
      chunk.data.assign(payload.begin() + 8, payload.end());
      chunk.length = chunk.data.size();
    }
    chunks.push_back(std::move(chunk));
    if ((chunks.back().flags & 1) != 0) return chunks;
  }
}

TEST(nbd_lane_structured_read_from_64k_sends_holes_as_offset_hole_chunks) {
  auto volume = makeVolume(4 * kMiB);
  std::vector<uint8_t> first(4096, 0x11), second(4096, 0x22), small(512, 0x33);
  volume->write(0, first.data(), first.size());
  volume->write(96 * 1024, second.data(), second.size());
  // 512 bytes at 201 KiB: with 16 KiB blocks, a block that mixes data and hole is data.
  volume->write(201 * 1024, small.data(), small.size());
  Pair pair;
  NbdLaneOptions options = optionsFor(pair.server, 4 * kMiB, true);
  options.minimumBlockBytes = 16384;
  Running running(volume, options);
  sendAll(pair.client, request(0, 0, 21, 0, 256 * 1024));
  auto chunks = readChunks(pair.client, 21);
  REQUIRE(chunks.size() == 6u);
  const uint64_t K = 1024;
  const struct { uint16_t type; uint64_t offset, length; } expected[] = {
      {1, 0, 16 * K}, {2, 16 * K, 80 * K}, {1, 96 * K, 16 * K}, {2, 112 * K, 80 * K}, {1, 192 * K, 16 * K}, {2, 208 * K, 48 * K}};
  std::vector<uint8_t> zeros(16 * K, 0);
  for (size_t i = 0; i < 6; i++) {
    CHECK_EQ(chunks[i].type, expected[i].type);
    CHECK_EQ(chunks[i].offset, expected[i].offset);
    CHECK_EQ(chunks[i].length, expected[i].length);
    CHECK_EQ(chunks[i].flags, i == 5 ? 1u : 0u);
  }
  CHECK(std::equal(first.begin(), first.end(), chunks[0].data.begin()));
  CHECK(std::equal(chunks[0].data.begin() + 4096, chunks[0].data.end(), zeros.begin()));
  CHECK(std::equal(second.begin(), second.end(), chunks[2].data.begin()));
  CHECK(std::equal(small.begin(), small.end(), chunks[4].data.begin() + 9 * K));
  // DF: one OFFSET_DATA chunk, holes read as zeros.
  sendAll(pair.client, request(0, 1 << 2, 22, 0, 128 * 1024));
  auto whole = readChunks(pair.client, 22);
  REQUIRE(whole.size() == 1u);
  CHECK_EQ(whole[0].type, 1u);
  CHECK_EQ(whole[0].length, 128u * 1024u);
  CHECK(std::all_of(whole[0].data.begin() + 4096, whole[0].data.begin() + 96 * 1024, [](uint8_t b) { return b == 0; }));
  clientCloses(pair, running);
  CHECK_EQ(running.lane->counter(bm::kLaneBytesRead), 384u * 1024u);
}

TEST(nbd_lane_block_status_of_base_allocation_alone_is_answered_from_the_allocation_map) {
  auto volume = makeVolume(4 * kMiB);
  std::vector<uint8_t> data(4096, 0x44);
  volume->write(0, data.data(), data.size());
  volume->write(96 * 1024, data.data(), data.size());
  Pair pair;
  NbdLaneOptions options = optionsFor(pair.server, 4 * kMiB, true);
  options.allocationContextId = 5;
  Running running(volume, options);
  auto descriptors = [&](uint64_t cookie) {
    auto chunks = receiveExactly(pair.client, 20);
    CHECK_EQ(get32(chunks.data()), 0x668e33efu);
    CHECK_EQ((uint32_t{chunks[4]} << 8 | chunks[5]), 1u);  // DONE
    CHECK_EQ((uint32_t{chunks[6]} << 8 | chunks[7]), 5u);  // BLOCK_STATUS
    CHECK_EQ(get64(chunks.data() + 8), cookie);
    auto payload = receiveExactly(pair.client, get32(chunks.data() + 16));
    CHECK_EQ(get32(payload.data()), 5u);  // the context id
    std::vector<std::pair<uint32_t, uint32_t>> out;
    for (size_t at = 4; at + 8 <= payload.size(); at += 8) out.emplace_back(get32(payload.data() + at), get32(payload.data() + at + 4));
    return out;
  };
  sendAll(pair.client, request(7, 0, 31, 0, 256 * 1024));
  const std::vector<std::pair<uint32_t, uint32_t>> all = {{4096, 0}, {92 * 1024, 3}, {4096, 0}, {156 * 1024, 3}};
  CHECK(descriptors(31) == all);
  // REQ_ONE: the first extent only.
  sendAll(pair.client, request(7, 1 << 3, 32, 4096, 256 * 1024));
  const std::vector<std::pair<uint32_t, uint32_t>> one = {{92 * 1024, 3}};
  CHECK(descriptors(32) == one);
  // An invalid one (past the end) still goes to the main loop.
  sendAll(pair.client, request(7, 0, 33, 4 * kMiB - 4096, 8192));
  CHECK(running.join() == NbdLaneEnd::HandBack);
  CHECK_EQ(running.lane->counter(bm::kLaneRequests + 7), 2u);
  ::close(pair.server);
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
