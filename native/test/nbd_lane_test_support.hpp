// Helpers shared by the NBD lane tests (nbd_lane_test.cpp, nbd_lane_extents_test.cpp,
// nbd_lane_gate_test.cpp): volumes and journals on anonymous regions, requests and replies
// encoded by hand, a socketpair whose client end the test drives, a lane on a thread.
#pragma once

#include <sys/socket.h>
#include <unistd.h>

#include <memory>
#include <thread>
#include <vector>

#include "check.hpp"
#include "journal.hpp"
#include "nbd_lane.hpp"
#include "test_support.hpp"
#include "volume.hpp"

namespace nbdlanetest {

using bm::NbdLane;
using bm::NbdLaneEnd;
using bm::NbdLaneOptions;
using bm::Volume;

constexpr uint64_t kMiB = 1024 * 1024;

inline std::shared_ptr<bm::Journal> makeJournal(uint64_t capacityBytes) {
  bm::JournalOptions options;
  options.capacityBytes = capacityBytes;
  options.maxRecordBytes = capacityBytes / 4;
  return bm::Journal::create(bmtest::anonymousRegion(bm::Journal::regionBytesFor(capacityBytes)), options);
}

inline std::shared_ptr<Volume> makeVolume(uint64_t capacityBytes) {
  auto region = bmtest::anonymousRegion(Volume::regionBytesFor(capacityBytes));
  bm::VolumeOptions options;
  options.capacityBytes = capacityBytes;
  return std::shared_ptr<Volume>(Volume::create(region, options).release());
}

inline void put32(std::vector<uint8_t>& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}
inline void put16(std::vector<uint8_t>& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v >> 8));
  out.push_back(static_cast<uint8_t>(v));
}
inline void put64(std::vector<uint8_t>& out, uint64_t v) {
  put32(out, static_cast<uint32_t>(v >> 32));
  put32(out, static_cast<uint32_t>(v));
}
inline std::vector<uint8_t> request(uint16_t type, uint16_t flags, uint64_t cookie, uint64_t offset, uint32_t length, uint32_t magic = 0x25609513) {
  std::vector<uint8_t> out;
  put32(out, magic);
  put16(out, flags);
  put16(out, type);
  put64(out, cookie);
  put64(out, offset);
  put32(out, length);
  return out;
}
inline uint32_t get32(const uint8_t* p) { return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | p[3]; }
inline uint64_t get64(const uint8_t* p) { return (uint64_t{get32(p)} << 32) | get32(p + 4); }

inline void sendAll(int fd, const std::vector<uint8_t>& bytes) {
  size_t done = 0;
  while (done < bytes.size()) {
    const ssize_t n = ::send(fd, bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    REQUIRE(n > 0);
    done += static_cast<size_t>(n);
  }
}
inline std::vector<uint8_t> receiveExactly(int fd, size_t length) {
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
inline uint32_t simpleReply(int fd, uint64_t cookie) {
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
inline void clientCloses(Pair& pair, Running& running) {
  ::shutdown(pair.client, SHUT_WR);
  CHECK(running.join() == NbdLaneEnd::Client);
}

inline NbdLaneOptions optionsFor(int fd, uint64_t size, bool structured = false) {
  NbdLaneOptions options;
  options.fd = fd;
  options.structured = structured;
  options.transmissionFlags = 1 | (1 << 2) | (1 << 3) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);
  options.sizeBytes = size;
  return options;
}


}  // namespace nbdlanetest
