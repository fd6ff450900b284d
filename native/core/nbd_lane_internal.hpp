// Notes on the design
// -------------------
// What the parts of NbdLane share (nbd_lane.cpp: the request loop and writes; nbd_lane_extents.cpp:
// replies built from the allocation map), included by them and nothing else: the protocol's
// constants and big-endian helpers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bm::nbd_lane_internal {

constexpr uint32_t kRequestMagic = 0x25609513;
constexpr uint32_t kSimpleReplyMagic = 0x67446698;
constexpr uint32_t kStructuredReplyMagic = 0x668e33ef;
constexpr size_t kHeaderBytes = 28;
constexpr size_t kSimpleReplyBytes = 16;
constexpr size_t kChunkHeaderBytes = 20;
constexpr size_t kOffsetDataPrefixBytes = kChunkHeaderBytes + 8;

constexpr uint16_t kCmdRead = 0, kCmdWrite = 1, kCmdDisc = 2, kCmdFlush = 3, kCmdTrim = 4,
                   kCmdCache = 5, kCmdWriteZeroes = 6, kCmdBlockStatus = 7, kCmdCount = 8;
constexpr uint16_t kFlagFua = 1 << 0, kFlagNoHole = 1 << 1, kFlagDf = 1 << 2, kFlagReqOne = 1 << 3, kFlagFastZero = 1 << 4;
constexpr uint32_t kTxReadOnly = 1 << 1, kTxSendFua = 1 << 3, kTxSendDf = 1 << 7, kTxSendFastZero = 1 << 11;
constexpr uint16_t kReplyFlagDone = 1;
constexpr uint16_t kReplyTypeOffsetData = 1;
constexpr uint16_t kReplyTypeOffsetHole = 2;
constexpr uint16_t kReplyTypeBlockStatus = 5;
// base:allocation flags of a hole (NBD_STATE_HOLE | NBD_STATE_ZERO: it reads as zeros).
constexpr uint32_t kStateHoleZero = 3;
// At most this many descriptors in one BLOCK_STATUS chunk (src/nbd/extents.ts DEFAULT_MAX_EXTENTS).
constexpr size_t kMaxExtents = 1024;
constexpr size_t kOffsetHoleChunkBytes = kChunkHeaderBytes + 12;
// Holes shorter than this travel as data (src/nbd/transmission.ts MIN_HOLE_CHUNK_BYTES).
constexpr uint64_t kMinHoleChunkBytes = 4096;
constexpr uint16_t kReplyTypeError = 0x8001;
constexpr uint32_t kEperm = 1, kEio = 5, kEinval = 22, kEshutdown = 108;

inline uint32_t loadBe32(const uint8_t* p) noexcept {
  return (uint32_t{p[0]} << 24) | (uint32_t{p[1]} << 16) | (uint32_t{p[2]} << 8) | uint32_t{p[3]};
}
inline uint16_t loadBe16(const uint8_t* p) noexcept { return static_cast<uint16_t>((p[0] << 8) | p[1]); }
inline uint64_t loadBe64(const uint8_t* p) noexcept { return (uint64_t{loadBe32(p)} << 32) | loadBe32(p + 4); }
inline void storeBe16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}
inline void storeBe32(uint8_t* p, uint32_t v) noexcept {
  for (int i = 3; i >= 0; i--) {
    p[i] = static_cast<uint8_t>(v);
    v >>= 8;
  }
}
inline void storeBe64(uint8_t* p, uint64_t v) noexcept {
  storeBe32(p, static_cast<uint32_t>(v >> 32));
  storeBe32(p + 4, static_cast<uint32_t>(v));
}
// The cookie is echoed byte for byte: kept as the big-endian load of its 8 bytes.
inline void storeCookie(uint8_t* p, uint64_t cookie) noexcept { storeBe64(p, cookie); }

}  // namespace bm::nbd_lane_internal
