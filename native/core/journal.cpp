// Notes on the design
// -------------------
// See journal.hpp for the format and the contract. Implementation notes:
//
// Header bytes: [0,8) magic, [8,12) version, [16,24) ringBytes, [24,32) maxRecordBytes,
// [32,36) crc32c of [0,32). [192,200) id, [200,204) crc32c of the id (a journal from before ids
// fails it: id 0). [256,260) intent count, then kMaxIntents entries of 32 bytes at 264: volumeId
// u64, byteOffset u64, byteLength u64, kind u16; then kDirectIntents direct slots of the same
// shape at 2312, kind 0 when free. Then two cursor slots at 64 and 128, each: generation u64,
// headSequence u64, nextSequence u64, headOffset u64, tailOffset u64, usedBytes u64, crc32c u32
// of the preceding 48 bytes. Cursors are published into the slot of the new generation's parity,
// so a crash in the middle of publishing leaves the other slot (one generation older) intact;
// open() takes the valid slot with the highest generation.
//
// Ring invariants (checked by the walks): the records with sequences [headSequence,
// nextSequence) lie in order from headOffset, occupying usedBytes in all, fillers included, and
// end at tailOffset. Offsets are 8-aligned and < ringBytes. When fewer than a record header's
// bytes are left at the ring end the wrap is implicit (no WRAP record fits); otherwise a WRAP
// filler carries the sequence of the record that follows it at offset 0. An empty ring restarts
// at offset 0.
//
// Crash order of append: payload, then record header (a release fence between), then cursors.
// So a record is either published, or complete but unpublished (open() adopts it: its header
// CRC and sequence are right), or torn (its header CRC fails: open() cuts it). A published record
// whose header fails at open means the memory was damaged: the unreadable records are dropped
// and headSequence jumps to nextSequence, so a reader asking for them gets ERR_JOURNAL_RELEASED
// (its pair then resyncs from the bitmap) instead of a silent gap; sequences are never reused.
//
// The code is split by concern: this file (format, open, recovery, the cursor slots, stats),
// journal_intents.cpp (the identity and the intent area), journal_writer.cpp (append: placement
// and record headers), journal_reader.cpp (the walks: readFrom, ringBytesFrom, release) and
// journal_internal.hpp (the header layout and the Step they share).
#include "journal.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "byte_order.hpp"
#include "crc32c.hpp"
#include "errors.hpp"
#include "journal_internal.hpp"

namespace bm {

using namespace journal_internal;

namespace {

inline uint64_t alignUp8(uint64_t value) noexcept { return (value + 7) & ~uint64_t{7}; }

struct CursorSlot {
  uint64_t generation, headSequence, nextSequence, headOffset, tailOffset, usedBytes;
};

bool readCursorSlot(const uint8_t* slot, CursorSlot& cursors) noexcept {
  if (crc32c(0, slot, kCursorSlotCrcByteOffset) !=
      readLittleEndian<uint32_t>(slot + kCursorSlotCrcByteOffset)) {
    return false;
  }
  cursors.generation = readLittleEndian<uint64_t>(slot);
  cursors.headSequence = readLittleEndian<uint64_t>(slot + 8);
  cursors.nextSequence = readLittleEndian<uint64_t>(slot + 16);
  cursors.headOffset = readLittleEndian<uint64_t>(slot + 24);
  cursors.tailOffset = readLittleEndian<uint64_t>(slot + 32);
  cursors.usedBytes = readLittleEndian<uint64_t>(slot + 40);
  return true;
}

}  // namespace

uint64_t Journal::regionBytesFor(uint64_t capacityBytes) noexcept {
  return kHeaderBytes + capacityBytes;
}

uint64_t Journal::recordBytes(uint32_t payloadBytes) noexcept {
  return alignUp8(kRecordHeaderBytes + payloadBytes);
}

std::unique_ptr<Journal> Journal::create(std::shared_ptr<Region> region,
                                         const JournalOptions& options) {
  if (!region) throw ArgumentError("journal region must not be null");
  if (options.capacityBytes < kMinCapacityBytes || options.capacityBytes % 8 != 0) {
    throw RangeError("journal capacityBytes " + std::to_string(options.capacityBytes) +
                     " must be a multiple of 8 and at least " + std::to_string(kMinCapacityBytes));
  }
  if (options.maxRecordBytes == 0 || options.maxRecordBytes > options.capacityBytes / 4 ||
      options.maxRecordBytes > UINT32_MAX - kRecordHeaderBytes) {
    throw RangeError("journal maxRecordBytes " + std::to_string(options.maxRecordBytes) +
                     " must be from 1 to capacityBytes / 4 (" +
                     std::to_string(options.capacityBytes / 4) + ")");
  }
  const uint64_t neededBytes = regionBytesFor(options.capacityBytes);
  if (region->byteLength() < neededBytes) {
    throw Error(Code::ERR_REGION_TOO_SMALL,
                "journal of " + std::to_string(options.capacityBytes) + " ring bytes needs a " +
                    std::to_string(neededBytes) + "-byte region, got " +
                    std::to_string(region->byteLength()));
  }
  // A fresh ring: records of an earlier journal in the same region could otherwise be adopted
  // by a later open() as complete unpublished records. Punching holes also returns the memory.
  region->trim(0, neededBytes);

  std::unique_ptr<Journal> journal(new Journal());
  journal->region_ = std::move(region);
  journal->header_ = journal->region_->data();
  journal->ring_ = journal->header_ + kHeaderBytes;
  journal->capacityBytes_ = options.capacityBytes;
  journal->maxRecordBytes_ = options.maxRecordBytes;
  uint8_t* header = journal->header_;
  writeLittleEndian<uint64_t>(header, kJournalMagic);
  writeLittleEndian<uint32_t>(header + 8, kJournalVersion);
  writeLittleEndian<uint64_t>(header + 16, options.capacityBytes);
  writeLittleEndian<uint64_t>(header + 24, options.maxRecordBytes);
  writeLittleEndian<uint32_t>(header + kStaticCrcByteOffset,
                              crc32c(0, header, kStaticCrcByteOffset));
  writeLittleEndian<uint64_t>(header + kIdByteOffset, options.id);
  writeLittleEndian<uint32_t>(header + kIdByteOffset + 8, crc32c(0, header + kIdByteOffset, 8));
  journal->id_ = options.id;
  journal->publishCursors();
  return journal;
}

std::unique_ptr<Journal> Journal::open(std::shared_ptr<Region> region) {
  if (!region) throw ArgumentError("journal region must not be null");
  auto badHeader = [](const std::string& why) {
    return Error(Code::ERR_JOURNAL_BAD_HEADER, "journal header: " + why);
  };
  if (region->byteLength() < kHeaderBytes + kMinCapacityBytes) {
    throw badHeader("region of " + std::to_string(region->byteLength()) +
                    " bytes is too small to hold a journal");
  }
  const uint8_t* header = region->data();
  if (readLittleEndian<uint64_t>(header) != kJournalMagic) throw badHeader("bad magic");
  if (readLittleEndian<uint32_t>(header + 8) != kJournalVersion) {
    throw badHeader("unsupported version " + std::to_string(readLittleEndian<uint32_t>(header + 8)));
  }
  if (readLittleEndian<uint32_t>(header + kStaticCrcByteOffset) !=
      crc32c(0, header, kStaticCrcByteOffset)) {
    throw badHeader("checksum mismatch");
  }
  const uint64_t capacityBytes = readLittleEndian<uint64_t>(header + 16);
  const uint64_t maxRecordBytes = readLittleEndian<uint64_t>(header + 24);
  if (capacityBytes < kMinCapacityBytes || capacityBytes % 8 != 0 || maxRecordBytes == 0 ||
      maxRecordBytes > capacityBytes / 4 || maxRecordBytes > UINT32_MAX - kRecordHeaderBytes) {
    throw badHeader("bad geometry (ring " + std::to_string(capacityBytes) + " bytes, records up to " +
                    std::to_string(maxRecordBytes) + " bytes)");
  }
  if (region->byteLength() < regionBytesFor(capacityBytes)) {
    throw Error(Code::ERR_REGION_TOO_SMALL,
                "journal of " + std::to_string(capacityBytes) + " ring bytes needs a " +
                    std::to_string(regionBytesFor(capacityBytes)) + "-byte region, got " +
                    std::to_string(region->byteLength()));
  }
  std::unique_ptr<Journal> journal(new Journal());
  journal->region_ = std::move(region);
  journal->header_ = journal->region_->data();
  journal->ring_ = journal->header_ + kHeaderBytes;
  journal->capacityBytes_ = capacityBytes;
  journal->maxRecordBytes_ = maxRecordBytes;
  journal->recover();
  journal->readIdentityAndIntents();
  return journal;
}

Journal::~Journal() { close(); }

void Journal::close() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  region_.reset();
  header_ = nullptr;
  ring_ = nullptr;
}

void Journal::checkOpen() const {
  if (region_ == nullptr) throw Error(Code::ERR_JOURNAL_CLOSED, "journal is closed");
}

void Journal::publishCursors() noexcept {
  cursorGeneration_++;
  uint8_t* slot = header_ + kCursorSlotByteOffset[cursorGeneration_ & 1];
  writeLittleEndian<uint64_t>(slot, cursorGeneration_);
  writeLittleEndian<uint64_t>(slot + 8, headSequence_);
  writeLittleEndian<uint64_t>(slot + 16, nextSequence_);
  writeLittleEndian<uint64_t>(slot + 24, headOffset_);
  writeLittleEndian<uint64_t>(slot + 32, tailOffset_);
  writeLittleEndian<uint64_t>(slot + 40, usedBytes_);
  // The checksum goes last so a slot torn by a crash fails its check.
  std::atomic_thread_fence(std::memory_order_release);
  writeLittleEndian<uint32_t>(slot + kCursorSlotCrcByteOffset,
                              crc32c(0, slot, kCursorSlotCrcByteOffset));
}

void Journal::recover() {
  CursorSlot slots[2];
  bool valid[2];
  for (int i = 0; i < 2; i++) valid[i] = readCursorSlot(header_ + kCursorSlotByteOffset[i], slots[i]);
  if (!valid[0] && !valid[1]) {
    throw Error(Code::ERR_JOURNAL_BAD_HEADER, "journal header: no valid cursor slot");
  }
  const CursorSlot& cursors =
      !valid[1] || (valid[0] && slots[0].generation > slots[1].generation) ? slots[0] : slots[1];
  const uint64_t capacity = capacityBytes_;
  const bool sane = cursors.headSequence >= 1 && cursors.nextSequence >= cursors.headSequence &&
                    cursors.headOffset < capacity && cursors.tailOffset < capacity &&
                    cursors.headOffset % 8 == 0 && cursors.tailOffset % 8 == 0 &&
                    cursors.usedBytes <= capacity &&
                    cursors.nextSequence - cursors.headSequence <=
                        cursors.usedBytes / kRecordHeaderBytes &&
                    (cursors.usedBytes != 0 || cursors.headOffset == cursors.tailOffset);
  if (!sane || cursors.nextSequence >= UINT64_MAX / 2) {
    throw Error(Code::ERR_JOURNAL_BAD_HEADER, "journal header: inconsistent cursors");
  }
  cursorGeneration_ = cursors.generation;
  headSequence_ = cursors.headSequence;
  nextSequence_ = cursors.nextSequence;
  headOffset_ = cursors.headOffset;
  tailOffset_ = cursors.tailOffset;
  usedBytes_ = cursors.usedBytes;

  // Walk the published records: they must chain from head to tail.
  uint64_t offset = headOffset_;
  uint64_t consumed = 0;
  bool chainIntact = true;
  for (uint64_t sequence = headSequence_; sequence < nextSequence_; sequence++) {
    Step step;
    if (!stepAt(offset, sequence, usedBytes_ - consumed, step)) {
      chainIntact = false;
      break;
    }
    consumed += step.consumedBytes;
    offset = step.nextOffset;
  }
  if (chainIntact && (consumed != usedBytes_ || (usedBytes_ != 0 && offset != tailOffset_))) {
    chainIntact = false;
  }
  bool changed = false;
  if (!chainIntact) {
    recoveredCutCount_ = nextSequence_ - headSequence_;
    headSequence_ = nextSequence_;
    headOffset_ = tailOffset_ = usedBytes_ = 0;
    region_->trim(kHeaderBytes, capacity);
    changed = true;
  } else {
    // Adopt records that were complete but not yet published when the appender died. The one
    // after them, if any, was torn: the next append overwrites it.
    while (true) {
      const uint64_t startOffset = usedBytes_ == 0 ? 0 : tailOffset_;
      Step step;
      if (!stepAt(startOffset, nextSequence_, capacity - usedBytes_, step)) break;
      if (usedBytes_ == 0) headOffset_ = 0;
      usedBytes_ += step.consumedBytes;
      tailOffset_ = step.nextOffset;
      nextSequence_++;
      changed = true;
    }
    // A torn header left at the tail is harmless (the next append overwrites it), but counting
    // it tells tests and operators that a crash cut something.
    const uint64_t tornOffset = usedBytes_ == 0 ? 0 : tailOffset_;
    if (capacity - tornOffset >= kRecordHeaderBytes &&
        readLittleEndian<uint32_t>(ring_ + tornOffset) == kRecordMagic) {
      Step step;
      if (!stepAt(tornOffset, nextSequence_, capacity - usedBytes_, step) &&
          readLittleEndian<uint64_t>(ring_ + tornOffset + 8) >= nextSequence_) {
        recoveredCutCount_++;
      }
    }
  }
  if (changed) publishCursors();
}

JournalStats Journal::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  checkOpen();
  return JournalStats{headSequence_,  nextSequence_,   nextSequence_ - headSequence_,
                      usedBytes_,     capacityBytes_,  maxRecordBytes_,
                      appendCount_,   fullCount_};
}

uint64_t Journal::headSequence() const {
  std::lock_guard<std::mutex> lock(mutex_);
  checkOpen();
  return headSequence_;
}

uint64_t Journal::nextSequence() const {
  std::lock_guard<std::mutex> lock(mutex_);
  checkOpen();
  return nextSequence_;
}

}  // namespace bm
