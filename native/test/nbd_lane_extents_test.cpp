// The NBD lane's replies built from the allocation map (nbd_lane_extents.cpp) over a real
// socketpair: a structured read of 64 KiB or more sends OFFSET_HOLE chunks for holes (blocks of
// the export's minimum size that mix data and hole count as data; DF gives one OFFSET_DATA
// chunk), and BLOCK_STATUS of base:allocation alone is answered from the map (REQ_ONE: one
// descriptor); an invalid one still hands back.
#include <algorithm>
#include <vector>

#include "nbd_lane_test_support.hpp"

using namespace nbdlanetest;

namespace {

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

}  // namespace

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

BM_TEST_MAIN()
