// Notes on the design
// -------------------
// A native lane: the transmission phase of one NBD connection to a plain volume, served on a
// thread of its own in blocking I/O, as nbdkit serves a connection (docs/nbd-native.md). The
// handshake, the choice of which connections get a lane, the counters' owners, stop and eviction
// stay in TypeScript (src/nbd/native-lanes.ts); this class only moves requests between the
// socket and the volume.
//
// A lane of a replicated volume's export (an async primary, docs/nbd-native.md) has the volume's
// gate (lane_gate.hpp): its writes journal, under the gate, while the gate is open; at a closed
// gate it hands the connection back. See NbdLaneOptions::gate.
//
// What a lane serves itself: READ (simple replies; structured: one OFFSET_DATA chunk when the
// read is shorter than holeDetectionMinBytes or carries DF, else OFFSET_DATA and OFFSET_HOLE
// chunks from the volume's allocation map, as src/nbd/transmission.ts readWithHoles builds
// them), BLOCK_STATUS of base:allocation (NbdLaneOptions::allocationContextId), WRITE (FUA
// included), FLUSH, TRIM,
// WRITE_ZEROES, CACHE and DISC, each only when it is valid for the export exactly as
// src/nbd/protocol-requests.ts validateRequest decides. Everything else (a bad magic, an
// invalid request, BLOCK_STATUS unless base:allocation is the only meta context selected, an
// unknown command)
// ends the lane with HandBack at that request's header: the lane has answered everything
// before it, and the bytes from that header on go back with the socket, so the main loop's
// connection resumes there with every rule and error message of its own. So the lane never
// invents an answer the main loop would not give: it either gives the same one or none.
//
// Per turn: everything complete in the receive buffer is served, then the replies go out in one
// sendmsg, then one blocking recv. A WRITE payload of at least kDirectMinBytes that is not yet
// in the buffer is received straight into the volume (beginDirectWrite marks the bitmaps before
// the first byte lands; commitDirectWrite after the last), and after a WRITE of
// kHeaderFirstMinBytes the next recv takes a request header alone, so a stream of large writes
// lands in the store with the kernel's copy only. A client that vanishes mid-payload: the range
// is committed unacknowledged (as src/nbd/receive.ts does), never replied.
//
// Threads: run() is the lane thread's; stop() may be called from any thread (an atomic flag the
// lane reads at each request and at each receive timeout, kStopPollMs, so a graceful stop costs
// nothing per request; stop(false) also shuts the socket down both ways, which wakes a blocked
// recv or send; a stop() after the lane closed or handed back the socket does nothing). The
// volume object is the
// lane's alone while it runs (the caller opened it for the lane). Counters are atomics a reader
// on another thread may load at any time. The socket: the lane closes it when it ends, except on
// HandBack (then it is the caller's again, with handBackBytes()).
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "lane_gate.hpp"
#include "volume.hpp"

namespace bm {

struct NbdLaneOptions {
  int fd = -1;
  bool structured = false;
  uint32_t transmissionFlags = 0;
  uint64_t sizeBytes = 0;
  uint32_t minimumBlockBytes = 1;
  uint32_t maximumBlockBytes = 32u << 20;
  uint32_t holeDetectionMinBytes = 64u << 10;
  // Receive large WRITE payloads straight into the volume (false: every payload through the
  // lane's buffer, as BLOCKMIRROR_NBD_RECEIVE=copy does on the event loop).
  bool directWrites = true;
  // Bytes read past the handshake (a pipelined first request).
  std::vector<uint8_t> leftover;
  // The id the client selected base:allocation with, when that is its only meta context: the
  // lane answers BLOCK_STATUS from the volume's allocation map. 0 (no context, or a dirty
  // bitmap's among them): BLOCK_STATUS hands the connection back.
  uint32_t allocationContextId = 0;
  // A replicated volume's gate (lane_gate.hpp; null for a plain volume). With one, the lane's
  // volume has the journal attached, payloads are buffered (no direct writes), each WRITE is
  // stored and journaled under the gate's lock while it is open and handed back when it is
  // closed, and TRIM and WRITE_ZEROES are handed back (the event loop marks the pairs' tracking
  // before they reach the store), and so is a WRITE of kDirectMinBytes or more (the event loop
  // receives it straight into the store, one copy fewer, and its turns interleave such writes
  // with shipping, which paces a host that outruns the link).
  std::shared_ptr<LaneGate> gate;
};

enum class NbdLaneEnd {
  Running,
  Client,    // EOF from the client between requests, or NBD_CMD_DISC
  Truncated, // EOF inside a request (counted as a protocol error, as the main loop's ERR_NBD_TRUNCATED)
  Server,    // stop() or evict
  HandBack,  // a request the lane does not serve: the socket goes back (see the note)
  Error,     // a socket error
};

const char* nbdLaneEndName(NbdLaneEnd end) noexcept;

// Counter slots (the layout of SERVER_COUNTERS in src/nbd/worker-protocol.ts).
enum NbdLaneCounter : size_t {
  kLaneBytesRead = 0,
  kLaneBytesWritten = 1,
  kLaneErrors = 2,
  kLaneProtocolErrors = 3,
  kLaneStoreReceivedWrites = 4,
  kLaneRequests = 5,  // 8 command counts, then unknown
  kLaneCounterCount = 5 + 9,
};

class NbdLane {
 public:
  static constexpr size_t kReceiveBytes = 256 * 1024;
  static constexpr uint32_t kDirectMinBytes = 32 * 1024;
  static constexpr uint32_t kHeaderFirstMinBytes = 128 * 1024;
  // How often an idle lane looks at the stop flag (graceful stop).
  static constexpr uint32_t kStopPollMs = 100;

  NbdLane(std::shared_ptr<Volume> volume, NbdLaneOptions options);
  NbdLane(const NbdLane&) = delete;
  NbdLane& operator=(const NbdLane&) = delete;

  // Serves until the connection ends; returns how. Call once, on the lane's thread.
  NbdLaneEnd run() noexcept;
  // Any thread. graceful: within kStopPollMs the lane answers what it received (ESHUTDOWN for
  // requests not started; what runs finishes), half-closes the socket and waits for the client
  // to hang up, as the event loop's graceful close does; not graceful: the socket is shut both
  // ways at once (a blocked recv or send fails), also ending a graceful drain.
  void stop(bool graceful) noexcept;

  uint64_t counter(size_t slot) const noexcept { return counters_[slot].load(std::memory_order_relaxed); }
  // After run() returned HandBack: the bytes from the handed-back request's header on.
  const std::vector<uint8_t>& handBackBytes() const noexcept { return handBack_; }
  // After run() returned Error: what failed.
  const std::string& errorMessage() const noexcept { return error_; }

 private:
  struct Header {
    uint16_t flags;
    uint16_t type;
    uint64_t cookie;
    uint64_t offset;
    uint32_t length;
  };

  bool serves(const Header& header) const noexcept;
  // Serves one request whose header starts at in_[start_]; false when it needs more bytes.
  bool serveOne(const Header& header, NbdLaneEnd& end);
  void serveRead(const Header& header);
  void serveReadWithHoles(const Header& header);
  void serveBlockStatus(const Header& header);
  void serveWrite(const Header& header, const uint8_t* payload);
  bool serveDirectWrite(const Header& header, NbdLaneEnd& end);
  // A WRITE on a gated lane (see NbdLaneOptions::gate); false with HandBack when it is closed.
  bool serveGatedWrite(const Header& header, NbdLaneEnd& end);
  void afterWrite(const Header& header);
  void flushVolume(const Header& header, bool& failed);

  void replySimple(uint64_t cookie, uint32_t errorValue);
  void replyError(uint64_t cookie, uint32_t errorValue, const std::string& message);
  void replyException(const Header& header);
  uint8_t* reserve(size_t bytes);
  bool sendReplies() noexcept;
  bool sendAll(const uint8_t* data, size_t length) noexcept;
  // recv into `target`; >0 bytes, 0 EOF, -1 error (error_ set), kTimedOut (the receive timeout).
  static constexpr ssize_t kTimedOut = -2;
  ssize_t receive(uint8_t* target, size_t length) noexcept;
  void setReceiveTimeout(uint32_t ms) noexcept;
  void drainAfterHalfClose() noexcept;
  void count(size_t slot, uint64_t value) noexcept {
    counters_[slot].store(counters_[slot].load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
  }

  std::shared_ptr<Volume> volume_;
  NbdLaneOptions options_;
  std::vector<uint8_t> in_;
  size_t start_ = 0;
  size_t end_ = 0;
  std::vector<uint8_t> out_;
  size_t outUsed_ = 0;
  bool headerFirst_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> stopped_{false};
  // Guards the socket between stop() and the end of run() (see stop()).
  std::mutex fdMutex_;
  bool fdOwned_ = true;
  std::atomic<uint64_t> counters_[kLaneCounterCount] = {};
  std::vector<uint8_t> handBack_;
  std::string error_;
};

}  // namespace bm
