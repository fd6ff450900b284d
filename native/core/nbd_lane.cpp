// The native lane of one NBD connection; see nbd_lane.hpp for the design.
#include "nbd_lane.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <exception>
#include <mutex>

#include "errors.hpp"
#include "nbd_lane_internal.hpp"

namespace bm {

using namespace nbd_lane_internal;

namespace {

// The NBD error for a core exception (src/nbd/replies.ts errnoForVolumeError).
uint32_t errnoFor(const std::exception& error) noexcept {
  if (dynamic_cast<const RangeError*>(&error) != nullptr || dynamic_cast<const ArgumentError*>(&error) != nullptr) return kEinval;
  if (const auto* coded = dynamic_cast<const Error*>(&error)) {
    const std::string name = codeName(coded->code());
    if (name.size() >= 7 && name.compare(name.size() - 7, 7, "_CLOSED") == 0) return kEshutdown;
    if (name == "ERR_PAIR_READ_ONLY" || name == "ERR_SNAPSHOT_READ_ONLY") return kEperm;
  }
  return kEio;
}

}  // namespace

const char* nbdLaneEndName(NbdLaneEnd end) noexcept {
  switch (end) {
    case NbdLaneEnd::Running: return "running";
    case NbdLaneEnd::Client: return "client";
    case NbdLaneEnd::Truncated: return "truncated";
    case NbdLaneEnd::Server: return "server";
    case NbdLaneEnd::HandBack: return "hand-back";
    case NbdLaneEnd::Error: return "error";
  }
  return "unknown";
}

NbdLane::NbdLane(std::shared_ptr<Volume> volume, NbdLaneOptions options)
    : volume_(std::move(volume)), options_(std::move(options)) {
  if (volume_ == nullptr) throw ArgumentError("an NBD lane needs a volume");
  if (options_.fd < 0) throw ArgumentError("an NBD lane needs a socket");
  if (options_.minimumBlockBytes == 0) throw RangeError("minimumBlockBytes must be at least 1");
  if (options_.sizeBytes > volume_->capacityBytes()) throw RangeError("the export is larger than its volume");
  if (options_.gate != nullptr) {
    if (volume_->journal() == nullptr) throw ArgumentError("a gated NBD lane needs the volume's journal attached");
    options_.directWrites = false;
  }
  in_.resize(std::max(kReceiveBytes, options_.leftover.size() + kHeaderBytes));
  if (!options_.leftover.empty()) std::memcpy(in_.data(), options_.leftover.data(), options_.leftover.size());
  end_ = options_.leftover.size();
  out_.resize(kReceiveBytes);
}

void NbdLane::stop(bool graceful) noexcept {
  stopping_.store(true, std::memory_order_release);
  // Graceful: the lane sees the flag at its next request or receive timeout (kStopPollMs) and
  // drains (see run()). Not graceful: the socket is shut both ways, which wakes a blocked recv or
  // send at once. Under the fd's lock: once the lane closed the socket or handed it back, the
  // number may name another file.
  if (graceful) return;
  std::lock_guard<std::mutex> lock(fdMutex_);
  if (!fdOwned_) return;
  if (!stopped_.exchange(true)) ::shutdown(options_.fd, SHUT_RDWR);
}

bool NbdLane::serves(const Header& h) const noexcept {
  const uint32_t tx = options_.transmissionFlags;
  if (h.type >= kCmdCount) return false;  // unknown: the main loop's EINVAL
  // BLOCK_STATUS: base:allocation alone (a dirty bitmap's context, or none: the main loop).
  if (h.type == kCmdBlockStatus && (options_.allocationContextId == 0 || !options_.structured)) return false;
  if (h.type == kCmdDisc) return true;
  const bool writeClass = h.type == kCmdWrite || h.type == kCmdTrim || h.type == kCmdWriteZeroes;
  if (writeClass && (tx & kTxReadOnly) != 0) return false;
  // A replicated volume's trims, zeroes and large writes take the event loop (see
  // NbdLaneOptions::gate).
  if (options_.gate != nullptr && (h.type == kCmdTrim || h.type == kCmdWriteZeroes)) return false;
  if (options_.gate != nullptr && h.type == kCmdWrite && h.length >= kDirectMinBytes) return false;
  uint16_t allowed = (tx & kTxSendFua) != 0 ? kFlagFua : 0;
  if (h.type == kCmdRead && (tx & kTxSendDf) != 0) allowed |= kFlagDf;
  if (h.type == kCmdBlockStatus) allowed |= kFlagReqOne;
  if (h.type == kCmdWriteZeroes) {
    allowed |= kFlagNoHole;
    if ((tx & kTxSendFastZero) != 0) allowed |= kFlagFastZero;
  }
  if ((h.flags & ~allowed) != 0) return false;
  if (h.type == kCmdFlush) return h.offset == 0 && h.length == 0;
  if (h.length == 0) return false;
  if (h.offset > options_.sizeBytes || h.length > options_.sizeBytes - h.offset) return false;
  const uint32_t minimum = options_.minimumBlockBytes;
  if (minimum > 1 && (h.offset % minimum != 0 || h.length % minimum != 0)) return false;
  if ((h.type == kCmdRead || h.type == kCmdWrite) && h.length > options_.maximumBlockBytes) return false;
  return true;
}

NbdLaneEnd NbdLane::run() noexcept {
  // The description was non-blocking for the event loop; the lane blocks.
  const int flags = ::fcntl(options_.fd, F_GETFL);
  if (flags >= 0 && (flags & O_NONBLOCK) != 0) ::fcntl(options_.fd, F_SETFL, flags & ~O_NONBLOCK);
  // An idle recv wakes every kStopPollMs to look at the stop flag (no cost per request).
  setReceiveTimeout(kStopPollMs);
  NbdLaneEnd end = NbdLaneEnd::Running;
  for (;;) {
    while (end == NbdLaneEnd::Running && end_ - start_ >= kHeaderBytes) {
      const uint8_t* p = in_.data() + start_;
      if (loadBe32(p) != kRequestMagic) {
        end = NbdLaneEnd::HandBack;
        break;
      }
      const Header header{loadBe16(p + 4), loadBe16(p + 6), loadBe64(p + 8), loadBe64(p + 16), loadBe32(p + 24)};
      if (!serves(header)) {
        end = NbdLaneEnd::HandBack;
        break;
      }
      if (!serveOne(header, end)) break;
    }
    if (end == NbdLaneEnd::HandBack) {
      handBack_.assign(in_.begin() + static_cast<std::ptrdiff_t>(start_), in_.begin() + static_cast<std::ptrdiff_t>(end_));
      if (!sendReplies()) end = NbdLaneEnd::Error;
      break;
    }
    if (!sendReplies()) {
      end = NbdLaneEnd::Error;
      break;
    }
    if (end != NbdLaneEnd::Running) break;
    // Room for the rest of the pending request (its payload is below kDirectMinBytes, or it is
    // a header), at the front of the buffer.
    if (start_ == end_) {
      start_ = end_ = 0;
    } else if (start_ > 0) {
      std::memmove(in_.data(), in_.data() + start_, end_ - start_);
      end_ -= start_;
      start_ = 0;
    }
    size_t want = in_.size() - end_;
    if (headerFirst_ && end_ < kHeaderBytes) want = kHeaderBytes - end_;
    const ssize_t got = receive(in_.data() + end_, want);
    if (got == kTimedOut) {
      if (!stopping_.load(std::memory_order_acquire)) continue;
      // A graceful stop: everything received is answered; half-close as the event loop does,
      // then wait for the client to hang up (or for stop(false)).
      drainAfterHalfClose();
      end = NbdLaneEnd::Server;
      break;
    }
    if (got == 0) {
      // Between requests a normal end; inside one (a partial header or payload) truncation.
      end = stopping_.load(std::memory_order_acquire) ? NbdLaneEnd::Server
            : end_ > start_                          ? NbdLaneEnd::Truncated
                                                     : NbdLaneEnd::Client;
      if (end == NbdLaneEnd::Truncated) count(kLaneProtocolErrors, 1);
      break;
    }
    if (got < 0) {
      end = stopping_.load(std::memory_order_acquire) ? NbdLaneEnd::Server : NbdLaneEnd::Error;
      break;
    }
    end_ += static_cast<size_t>(got);
  }
  {
    std::lock_guard<std::mutex> lock(fdMutex_);
    fdOwned_ = false;
    if (end == NbdLaneEnd::HandBack) setReceiveTimeout(0);
    else ::close(options_.fd);
  }
  return end;
}

void NbdLane::setReceiveTimeout(uint32_t ms) noexcept {
  timeval timeout{};
  timeout.tv_sec = ms / 1000;
  timeout.tv_usec = static_cast<suseconds_t>((ms % 1000) * 1000);
  ::setsockopt(options_.fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
}

void NbdLane::drainAfterHalfClose() noexcept {
  ::shutdown(options_.fd, SHUT_WR);
  // What the client still sends cannot be answered any more; read until it hangs up.
  uint8_t scratch[4096];
  for (;;) {
    const ssize_t got = receive(scratch, sizeof scratch);
    if (got == 0 || got == -1) return;
  }
}

bool NbdLane::serveOne(const Header& h, NbdLaneEnd& end) {
  if (h.type == kCmdWrite) {
    const size_t need = kHeaderBytes + h.length;
    if (end_ - start_ < need) {
      if (stopping_.load(std::memory_order_acquire)) {
        // Shutting down: a payload still to come is not waited for.
        end = NbdLaneEnd::Server;
        return false;
      }
      if (h.length >= kDirectMinBytes && options_.directWrites) return serveDirectWrite(h, end);
      if (in_.size() < need) in_.resize(need);
      return false;
    }
    if (options_.gate != nullptr && !stopping_.load(std::memory_order_acquire)) return serveGatedWrite(h, end);
  }
  const size_t type = h.type < kCmdCount ? h.type : kCmdCount;
  count(kLaneRequests + type, 1);
  headerFirst_ = h.type == kCmdWrite && h.length >= kHeaderFirstMinBytes;
  if (h.type == kCmdDisc) {
    start_ += kHeaderBytes;
    end = NbdLaneEnd::Client;
    return false;
  }
  const uint8_t* payload = in_.data() + start_ + kHeaderBytes;
  start_ += kHeaderBytes + (h.type == kCmdWrite ? h.length : 0);
  if (stopping_.load(std::memory_order_acquire)) {
    replyError(h.cookie, kEshutdown, "server is shutting down");
    return true;
  }
  switch (h.type) {
    case kCmdRead:
      if (options_.structured && h.length >= options_.holeDetectionMinBytes && (h.flags & kFlagDf) == 0) serveReadWithHoles(h);
      else serveRead(h);
      break;
    case kCmdWrite:
      serveWrite(h, payload);
      break;
    case kCmdFlush: {
      bool failed = false;
      flushVolume(h, failed);
      if (!failed) replySimple(h.cookie, 0);
      break;
    }
    case kCmdTrim:
    case kCmdWriteZeroes:
      try {
        if (h.type == kCmdTrim) volume_->trim(h.offset, h.length);
        else volume_->writeZeroes(h.offset, h.length, (h.flags & kFlagNoHole) == 0);
      } catch (const std::exception&) {
        replyException(h);
        break;
      }
      afterWrite(h);
      break;
    case kCmdCache:
      replySimple(h.cookie, 0);
      break;
    case kCmdBlockStatus:
      serveBlockStatus(h);
      break;
    default:
      BM_ASSERT(false);
  }
  return true;
}

void NbdLane::serveRead(const Header& h) {
  const size_t prefix = options_.structured ? kOffsetDataPrefixBytes : kSimpleReplyBytes;
  uint8_t* at = reserve(prefix + h.length);
  try {
    volume_->read(h.offset, at + prefix, h.length);
  } catch (const std::exception&) {
    outUsed_ -= prefix + h.length;
    replyException(h);
    return;
  }
  if (options_.structured) {
    storeBe32(at, kStructuredReplyMagic);
    storeBe16(at + 4, kReplyFlagDone);
    storeBe16(at + 6, kReplyTypeOffsetData);
    storeCookie(at + 8, h.cookie);
    storeBe32(at + 16, static_cast<uint32_t>(8 + h.length));
    storeBe64(at + 20, h.offset);
  } else {
    storeBe32(at, kSimpleReplyMagic);
    storeBe32(at + 4, 0);
    storeCookie(at + 8, h.cookie);
  }
  count(kLaneBytesRead, h.length);
}

void NbdLane::serveWrite(const Header& h, const uint8_t* payload) {
  try {
    volume_->write(h.offset, payload, h.length);
  } catch (const std::exception&) {
    replyException(h);
    return;
  }
  count(kLaneBytesWritten, h.length);
  afterWrite(h);
}

bool NbdLane::serveDirectWrite(const Header& h, NbdLaneEnd& end) {
  uint8_t* target = nullptr;
  try {
    target = volume_->beginDirectWrite(h.offset, h.length);
  } catch (const std::exception&) {
    target = nullptr;  // write() will answer the error once the payload is buffered
  }
  if (target == nullptr) {
    if (in_.size() < kHeaderBytes + h.length) in_.resize(kHeaderBytes + h.length);
    return false;
  }
  // The replies so far go out before this payload is waited for.
  if (!sendReplies()) {
    volume_->commitDirectWrite(h.offset, h.length);
    end = NbdLaneEnd::Error;
    return false;
  }
  const size_t buffered = end_ - start_ - kHeaderBytes;
  std::memcpy(target, in_.data() + start_ + kHeaderBytes, buffered);
  size_t landed = buffered;
  start_ = end_ = 0;
  while (landed < h.length) {
    const ssize_t got = receive(target + landed, h.length - landed);
    if (got == kTimedOut) continue;  // a slow client: the payload is still coming
    if (got <= 0) {
      // Torn: committed unacknowledged (the bits were marked before the first byte landed).
      volume_->commitDirectWrite(h.offset, h.length);
      end = stopping_.load(std::memory_order_acquire) ? NbdLaneEnd::Server : got == 0 ? NbdLaneEnd::Truncated : NbdLaneEnd::Error;
      if (end == NbdLaneEnd::Truncated) count(kLaneProtocolErrors, 1);
      return false;
    }
    landed += static_cast<size_t>(got);
  }
  try {
    volume_->commitDirectWrite(h.offset, h.length);
  } catch (const std::exception&) {
    count(kLaneRequests + kCmdWrite, 1);
    replyException(h);
    return true;
  }
  count(kLaneRequests + kCmdWrite, 1);
  count(kLaneStoreReceivedWrites, 1);
  count(kLaneBytesWritten, h.length);
  headerFirst_ = h.length >= kHeaderFirstMinBytes;
  afterWrite(h);
  return true;
}

bool NbdLane::serveGatedWrite(const Header& h, NbdLaneEnd& end) {
  const uint8_t* payload = in_.data() + start_ + kHeaderBytes;
  std::exception_ptr failure;
  {
    std::lock_guard<std::mutex> lock(options_.gate->mutex());
    if (!options_.gate->openLocked()) {
      // Nothing done: the event loop serves this request and the rest of the connection.
      end = NbdLaneEnd::HandBack;
      return false;
    }
    try {
      // begin marks every recording bitmap (the pairs' tracking) before a byte lands, as the
      // event loop's premark does; commit journals the record from the store.
      uint8_t* target = volume_->beginDirectWrite(h.offset, h.length);
      if (target != nullptr) {
        std::memcpy(target, payload, h.length);
        volume_->commitDirectWrite(h.offset, h.length);
      } else {
        volume_->write(h.offset, payload, h.length);
      }
    } catch (...) {
      failure = std::current_exception();
    }
  }
  count(kLaneRequests + kCmdWrite, 1);
  headerFirst_ = h.length >= kHeaderFirstMinBytes;
  start_ += kHeaderBytes + h.length;
  if (failure != nullptr) {
    try {
      std::rethrow_exception(failure);
    } catch (const std::exception&) {
      replyException(h);
    }
    return true;
  }
  count(kLaneBytesWritten, h.length);
  afterWrite(h);
  return true;
}

void NbdLane::afterWrite(const Header& h) {
  if ((h.flags & kFlagFua) != 0) {
    bool failed = false;
    flushVolume(h, failed);
    if (failed) return;
  }
  replySimple(h.cookie, 0);
}

void NbdLane::flushVolume(const Header& h, bool& failed) {
  try {
    volume_->flush();
  } catch (const std::exception& error) {
    failed = true;
    replyError(h.cookie, errnoFor(error), std::string("flush failed: ") + error.what());
  }
}

uint8_t* NbdLane::reserve(size_t bytes) {
  if (outUsed_ + bytes > out_.size()) {
    if (outUsed_ > 0 && !sendReplies()) {
      // The send failed: the connection ends after this turn; keep the bytes somewhere valid.
      outUsed_ = 0;
    }
    if (bytes > out_.size()) out_.resize(bytes);
  }
  uint8_t* at = out_.data() + outUsed_;
  outUsed_ += bytes;
  return at;
}

void NbdLane::replySimple(uint64_t cookie, uint32_t errorValue) {
  uint8_t* at = reserve(kSimpleReplyBytes);
  storeBe32(at, kSimpleReplyMagic);
  storeBe32(at + 4, errorValue);
  storeCookie(at + 8, cookie);
}

void NbdLane::replyError(uint64_t cookie, uint32_t errorValue, const std::string& message) {
  count(kLaneErrors, 1);
  if (!options_.structured) {
    replySimple(cookie, errorValue);
    return;
  }
  // An ERROR chunk with its message (at most 1024 bytes, cut at a UTF-8 boundary).
  size_t length = std::min<size_t>(message.size(), 1024);
  while (length > 0 && length < message.size() && (static_cast<uint8_t>(message[length]) & 0xc0) == 0x80) length--;
  uint8_t* at = reserve(kChunkHeaderBytes + 6 + length);
  storeBe32(at, kStructuredReplyMagic);
  storeBe16(at + 4, kReplyFlagDone);
  storeBe16(at + 6, kReplyTypeError);
  storeCookie(at + 8, cookie);
  storeBe32(at + 16, static_cast<uint32_t>(6 + length));
  storeBe32(at + 20, errorValue);
  storeBe16(at + 24, static_cast<uint16_t>(length));
  std::memcpy(at + 26, message.data(), length);
}

void NbdLane::replyException(const Header& h) {
  try {
    throw;
  } catch (const std::exception& error) {
    replyError(h.cookie, errnoFor(error), error.what());
  }
}

bool NbdLane::sendReplies() noexcept {
  if (outUsed_ == 0) return true;
  const bool sent = sendAll(out_.data(), outUsed_);
  outUsed_ = 0;
  return sent;
}

bool NbdLane::sendAll(const uint8_t* data, size_t length) noexcept {
  while (length > 0) {
    const ssize_t sent = ::send(options_.fd, data, length, MSG_NOSIGNAL);
    if (sent < 0) {
      if (errno == EINTR) continue;
      error_ = std::string("send: ") + std::strerror(errno);
      return false;
    }
    data += sent;
    length -= static_cast<size_t>(sent);
  }
  return true;
}

ssize_t NbdLane::receive(uint8_t* target, size_t length) noexcept {
  for (;;) {
    const ssize_t got = ::recv(options_.fd, target, length, 0);
    if (got >= 0) return got;
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) return kTimedOut;
    error_ = std::string("recv: ") + std::strerror(errno);
    return -1;
  }
}

}  // namespace bm
