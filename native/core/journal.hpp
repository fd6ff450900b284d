// Notes on the design
// -------------------
// A Journal is a bounded, ordered ring of write records in a Region:
//
//   [header: 4096 bytes][ring: capacityBytes]
//
// Header (little endian, crc32c over the static part): magic "BMJOURNL", version, ringBytes,
// maxRecordBytes, then the mutable cursors: headSequence (oldest unreleased), nextSequence (next
// to assign), headOffset, tailOffset, usedBytes. Sequences start at 1 and are never reused, not
// even across release and reopen.
//
// Record (8-aligned, padded to 8): magic u32 "BMJR", headerCrc u32 (crc32c of the rest of the
// header), sequence u64, volumeId u64, byteOffset u64, byteLength u32, kind u16, flags u16,
// dataCrc u32 (crc32c of the data; 0 for records without data), payloadBytes u32, then
// payloadBytes of data. A record never straddles the end of the ring: when the space left at the
// end is too small, a WRAP filler record takes it and the record starts at ring offset 0.
//
// append() never overwrites an unreleased record: when the ring lacks room it returns 0 (the
// caller reports "full"; the write path counts it and the pair falls back to its OOS bitmap).
// release(sequence) frees every record with sequence <= `sequence`. readFrom() copies records
// out, verifying both CRCs (ERR_JOURNAL_CHECKSUM on mismatch, which means memory corruption);
// asking for a released sequence is ERR_JOURNAL_RELEASED, one not yet written ERR_JOURNAL_NOT_YET
// (reading exactly nextSequence returns an empty batch).
//
// Concurrency: one std::mutex guards the cursors; append copies data under it (bounded by
// maxRecordBytes). One process appends to a journal at a time; a reopened named journal resumes
// from the header's cursors (a record whose header CRC fails at the tail was torn by a crash and
// is cut off).
//
// Identity: a journal carries an id (u64, given at create, kept across reopen; 0 = none) so a
// reader's position in its sequence space is never taken for one in another journal's.
//
// Intents: a write reaches the store before its record is appended (volume.cpp, steps 4 and 6),
// so a crash between the two leaves bytes in the store that no record holds. The writer lists
// the ranges of a write batch in the header's intent area before the first byte is stored and
// empties the list once their records are appended; open() hands what it found to the caller
// (pendingIntents()), who journals those ranges again from the store (replicated-volume.ts).
// Up to kMaxIntents ranges; a larger batch lists its first kMaxIntents - 1 and one range
// covering the rest. A direct write (Volume::beginDirectWrite: its bytes land from the socket
// long before commit) claims one of kDirectIntents slots of its own from begin to commit, so
// batches in between do not overwrite it; with every slot taken, begin returns null (the caller
// takes write()). The intent area has one writer thread at a time (the volume's).
#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <vector>

#include "region.hpp"

namespace bm {

enum class RecordKind : uint16_t { Write = 1, Zero = 2, Trim = 3, Marker = 4, Wrap = 0xFFFF };

struct JournalRecordHeader {
  uint32_t magic;
  uint32_t headerCrc;
  uint64_t sequence;
  uint64_t volumeId;
  uint64_t byteOffset;
  uint32_t byteLength;
  uint16_t kind;
  uint16_t flags;
  uint32_t dataCrc;
  uint32_t payloadBytes;
};
static_assert(sizeof(JournalRecordHeader) == 48, "record header layout is part of the format");

// A record as read out: header fields plus where its payload was copied.
struct JournalRecord {
  uint64_t sequence;
  uint64_t volumeId;
  uint64_t byteOffset;
  uint32_t byteLength;
  RecordKind kind;
  uint16_t flags;
  uint32_t dataCrc;
  uint64_t payloadOffset;  // offset in the caller's payload buffer
  uint32_t payloadBytes;
};

struct JournalOptions {
  uint64_t capacityBytes = 64ull << 20;   // ring bytes; >= 64 KiB
  uint64_t maxRecordBytes = 4ull << 20;   // largest payload; <= capacityBytes / 4
  uint64_t id = 0;                        // the journal's identity (0: none)
};

// A write between its store and its record, as the intent area lists it.
struct JournalIntent {
  uint64_t volumeId;
  uint64_t byteOffset;
  uint64_t byteLength;
  RecordKind kind;
};

struct JournalStats {
  uint64_t headSequence;
  uint64_t nextSequence;
  uint64_t recordCount;
  uint64_t usedBytes;
  uint64_t capacityBytes;
  uint64_t maxRecordBytes;
  uint64_t appendCount;
  uint64_t fullCount;
};

class Journal {
 public:
  static constexpr uint64_t kHeaderBytes = 4096;
  static constexpr uint64_t kMinCapacityBytes = 64 * 1024;
  // Bytes of region a journal of this capacity needs.
  static uint64_t regionBytesFor(uint64_t capacityBytes) noexcept;

  // Formats a new journal in `region` (which must be at least regionBytesFor(capacity)).
  static std::unique_ptr<Journal> create(std::shared_ptr<Region> region,
                                         const JournalOptions& options);
  // Opens an existing journal in `region` (ERR_JOURNAL_BAD_HEADER if it is not one).
  static std::unique_ptr<Journal> open(std::shared_ptr<Region> region);
  ~Journal();

  // Appends one record; returns its sequence, or 0 when the ring is full. `data` may be null
  // only when payloadBytes == 0. Error ERR_JOURNAL_RECORD_TOO_LARGE (a configured limit, not a
  // caller mistake) when payloadBytes > maxRecordBytes.
  uint64_t append(RecordKind kind, uint64_t volumeId, uint64_t byteOffset, uint32_t byteLength,
                  const void* data, uint32_t payloadBytes, uint16_t flags = 0);
  // Bytes of ring one record with this payload takes.
  static uint64_t recordBytes(uint32_t payloadBytes) noexcept;
  // True when a record with this payload would fit now.
  bool hasRoomFor(uint32_t payloadBytes) const;

  // Copies records with sequence >= fromSequence, at most maxRecords of them and at most
  // payloadCapacity payload bytes in all (at least one record is returned if any exists and it
  // fits in payloadCapacity), into `records` / `payload`. Returns the number copied.
  size_t readFrom(uint64_t fromSequence, size_t maxRecords, JournalRecord* records,
                  uint8_t* payload, uint64_t payloadCapacity);
  // The same, leaving `gapBytes` free in `payload` before each record's data (a caller that
  // frames records writes its per-record header there, so the data is copied only once), and
  // stopping before the data bytes pass maxDataBytes or the buffer (gaps included) is full.
  // `verifyData` false skips the check of each copy against its data CRC (the headers are still
  // checked): for a caller that sends the records with their CRCs to a receiver that checks
  // them (a pair's PAIR_RECORDS, whose frame CRC is combined from the records' CRCs).
  size_t readFrom(uint64_t fromSequence, size_t maxRecords, JournalRecord* records,
                  uint8_t* payload, uint64_t payloadCapacity, uint32_t gapBytes, uint64_t maxDataBytes,
                  bool verifyData = true);
  // An upper bound of the ring bytes (record headers included) from fromSequence to the tail:
  // exact when the read cursor stands there (a reader that follows the journal), else usedBytes.
  uint64_t ringBytesFrom(uint64_t fromSequence) const;
  // Frees all records with sequence <= throughSequence (clamped to what exists). Returns how many.
  uint64_t release(uint64_t throughSequence);

  JournalStats stats() const;
  uint64_t headSequence() const;
  uint64_t nextSequence() const;
  uint64_t capacityBytes() const noexcept { return capacityBytes_; }
  uint64_t maxRecordBytes() const noexcept { return maxRecordBytes_; }
  bool closed() const noexcept { return region_ == nullptr; }
  void close() noexcept;

  // Records cut by open() because they were torn or unreachable (0 after create()).
  uint64_t recoveredCutCount() const noexcept { return recoveredCutCount_; }

  // The id given at create (0 for none, or a journal from before ids).
  uint64_t id() const noexcept { return id_; }

  static constexpr uint32_t kMaxIntents = 64;
  // Lists intent `index` (< kMaxIntents); published by publishIntents(count).
  void setIntent(uint32_t index, const JournalIntent& intent) noexcept;
  // Makes the first `count` intents the list (0 empties it). Ordered after the entries and
  // before any later store by the caller (a release fence and a compiler barrier).
  void publishIntents(uint32_t count) noexcept;
  // Counts a record its writer could not append because the journal cannot hold it at all (a
  // payload over maxRecordBytes, a zero or trim over 4 GiB): to its readers it is a full journal.
  void countUnrepresentable() noexcept;

  static constexpr uint32_t kDirectIntents = 16;
  // Lists a direct write until releaseDirectIntent(); false when every slot is taken.
  bool claimDirectIntent(const JournalIntent& intent) noexcept;
  // Ends the listing of a direct write of exactly this range (none listed: nothing to do).
  void releaseDirectIntent(uint64_t volumeId, uint64_t byteOffset, uint64_t byteLength) noexcept;
  // The intents open() found: writes of a crashed writer that may be stored without a record.
  const std::vector<JournalIntent>& pendingIntents() const noexcept { return pendingIntents_; }
  // Forgets pendingIntents() (the caller journaled them again).
  void clearPendingIntents() noexcept;

 private:
  struct Placement;
  struct Step;
  Journal() = default;
  void checkOpen() const;
  Placement placementFor(uint64_t recordBytes) const noexcept;
  bool stepAt(uint64_t ringOffset, uint64_t expectedSequence, uint64_t bytesAvailable,
              Step& step) const noexcept;
  Step stepOrThrow(uint64_t ringOffset, uint64_t expectedSequence, uint64_t bytesAvailable) const;
  void writeRecordHeader(uint64_t ringOffset, RecordKind kind, uint64_t sequence,
                         uint64_t volumeId, uint64_t byteOffset, uint32_t byteLength,
                         uint16_t flags, uint32_t dataCrc, uint32_t payloadBytes) noexcept;
  void publishCursors() noexcept;
  void recover();
  void readIdentityAndIntents();
  std::shared_ptr<Region> region_;
  uint64_t id_ = 0;
  std::vector<JournalIntent> pendingIntents_;
  // The direct slots this object listed (a copy of what the header holds).
  JournalIntent directIntents_[kDirectIntents] = {};
  uint64_t capacityBytes_ = 0;
  uint64_t maxRecordBytes_ = 0;
  mutable std::mutex mutex_;
  // The header and the ring live in region_; the private fields below are caches.
  uint8_t* header_ = nullptr;
  uint8_t* ring_ = nullptr;
  // Read cursor cache: the ring offset of readCacheSequence_ (0 when unknown).
  uint64_t readCacheSequence_ = 0;
  uint64_t readCacheOffset_ = 0;
  uint64_t appendCount_ = 0;
  uint64_t fullCount_ = 0;
  uint64_t recoveredCutCount_ = 0;
  // Working copy of the cursors; publishCursors() writes them to the header.
  uint64_t cursorGeneration_ = 0;
  uint64_t headSequence_ = 1;
  uint64_t nextSequence_ = 1;
  uint64_t headOffset_ = 0;
  uint64_t tailOffset_ = 0;
  uint64_t usedBytes_ = 0;
};

}  // namespace bm
