// Notes on the design
// -------------------
// What the parts of the Journal share, included by them and nothing else: the header layout
// (described in journal.cpp's design note) and the Step a walk of the ring returns. The parts:
// journal.cpp (format, open, recovery, cursors, stats), journal_intents.cpp (the identity and
// the intent area), journal_writer.cpp (append) and journal_reader.cpp (the walks: readFrom,
// release).
#pragma once

#include <cstdint>

#include "journal.hpp"

namespace bm::journal_internal {

inline constexpr uint64_t kJournalMagic = 0x4C4E52554F4A4D42ull;  // "BMJOURNL" little endian
inline constexpr uint32_t kJournalVersion = 1;
inline constexpr uint32_t kRecordMagic = 0x524A4D42u;  // "BMJR" little endian
inline constexpr uint64_t kRecordHeaderBytes = sizeof(JournalRecordHeader);
inline constexpr uint64_t kStaticCrcByteOffset = 32;
inline constexpr uint64_t kCursorSlotByteOffset[2] = {64, 128};
inline constexpr uint64_t kCursorSlotCrcByteOffset = 48;
inline constexpr uint64_t kIdByteOffset = 192;
inline constexpr uint64_t kIntentCountByteOffset = 256;
inline constexpr uint64_t kIntentByteOffset = 264;
inline constexpr uint64_t kIntentBytes = 32;
inline constexpr uint64_t kDirectIntentByteOffset = kIntentByteOffset + Journal::kMaxIntents * kIntentBytes + 0;
static_assert(kDirectIntentByteOffset + Journal::kDirectIntents * kIntentBytes <= Journal::kHeaderBytes,
              "the intent area fits in the header");

}  // namespace bm::journal_internal

namespace bm {

// One record found by a walk: its header fields, where it starts, and the ring bytes it and any
// filler before it take.
struct Journal::Step {
  uint64_t recordOffset;
  uint64_t consumedBytes;
  uint64_t nextOffset;
  uint64_t sequence;
  uint64_t volumeId;
  uint64_t byteOffset;
  uint32_t byteLength;
  uint16_t kind;
  uint16_t flags;
  uint32_t dataCrc;
  uint32_t payloadBytes;
  const char* failure;  // why stepAt returned false
};

}  // namespace bm
