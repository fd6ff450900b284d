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
#include "journal.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#include "byte_order.hpp"
#include "crc32c.hpp"
#include "errors.hpp"

namespace bm {

namespace {

constexpr uint64_t kJournalMagic = 0x4C4E52554F4A4D42ull;  // "BMJOURNL" little endian
constexpr uint32_t kJournalVersion = 1;
constexpr uint32_t kRecordMagic = 0x524A4D42u;  // "BMJR" little endian
constexpr uint64_t kRecordHeaderBytes = sizeof(JournalRecordHeader);
constexpr uint64_t kStaticCrcByteOffset = 32;
constexpr uint64_t kCursorSlotByteOffset[2] = {64, 128};
constexpr uint64_t kCursorSlotCrcByteOffset = 48;
constexpr uint64_t kIdByteOffset = 192;
constexpr uint64_t kIntentCountByteOffset = 256;
constexpr uint64_t kIntentByteOffset = 264;
constexpr uint64_t kIntentBytes = 32;
constexpr uint64_t kDirectIntentByteOffset = kIntentByteOffset + Journal::kMaxIntents * kIntentBytes + 0;
static_assert(kDirectIntentByteOffset + Journal::kDirectIntents * kIntentBytes <= Journal::kHeaderBytes,
              "the intent area fits in the header");

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

// Where the next record goes: `fillerBytes` at the tail are given up to reach `recordOffset`.
struct Journal::Placement {
  bool fits;
  bool restart;  // the ring is empty: head and tail move back to offset 0
  uint64_t fillerBytes;
  uint64_t recordOffset;
};

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

void Journal::readIdentityAndIntents() {
  const uint8_t* header = header_;
  id_ = readLittleEndian<uint32_t>(header + kIdByteOffset + 8) == crc32c(0, header + kIdByteOffset, 8)
            ? readLittleEndian<uint64_t>(header + kIdByteOffset)
            : 0;
  // A count past the area is damage: every listed range is taken (the caller journals current
  // bytes again, which is always safe); an entry's kind other than zero or trim is a write.
  const uint32_t count = std::min(readLittleEndian<uint32_t>(header + kIntentCountByteOffset), kMaxIntents);
  pendingIntents_.clear();
  for (uint32_t i = 0; i < count; i++) {
    const uint8_t* entry = header + kIntentByteOffset + i * kIntentBytes;
    JournalIntent intent{};
    intent.volumeId = readLittleEndian<uint64_t>(entry);
    intent.byteOffset = readLittleEndian<uint64_t>(entry + 8);
    intent.byteLength = readLittleEndian<uint64_t>(entry + 16);
    const uint16_t kind = readLittleEndian<uint16_t>(entry + 24);
    intent.kind = kind == static_cast<uint16_t>(RecordKind::Zero) || kind == static_cast<uint16_t>(RecordKind::Trim)
                      ? static_cast<RecordKind>(kind)
                      : RecordKind::Write;
    pendingIntents_.push_back(intent);
  }
  for (uint32_t i = 0; i < kDirectIntents; i++) {
    const uint8_t* entry = header + kDirectIntentByteOffset + i * kIntentBytes;
    const uint16_t kind = readLittleEndian<uint16_t>(entry + 24);
    if (kind == 0) continue;
    pendingIntents_.push_back(JournalIntent{readLittleEndian<uint64_t>(entry), readLittleEndian<uint64_t>(entry + 8),
                                            readLittleEndian<uint64_t>(entry + 16), RecordKind::Write});
  }
}

void Journal::clearPendingIntents() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  pendingIntents_.clear();
  if (header_ == nullptr) return;
  // A crashed writer's direct slots: this object's own claims stay.
  for (uint32_t i = 0; i < kDirectIntents; i++) {
    if (directIntents_[i].byteLength == 0) writeLittleEndian<uint16_t>(header_ + kDirectIntentByteOffset + i * kIntentBytes + 24, 0);
  }
}

void Journal::countUnrepresentable() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  fullCount_++;
}

bool Journal::claimDirectIntent(const JournalIntent& intent) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (header_ == nullptr) return false;
  for (uint32_t i = 0; i < kDirectIntents; i++) {
    if (directIntents_[i].byteLength != 0) continue;
    directIntents_[i] = intent;
    directIntents_[i].byteLength = std::max<uint64_t>(intent.byteLength, 1);
    uint8_t* entry = header_ + kDirectIntentByteOffset + i * kIntentBytes;
    writeLittleEndian<uint64_t>(entry, intent.volumeId);
    writeLittleEndian<uint64_t>(entry + 8, intent.byteOffset);
    writeLittleEndian<uint64_t>(entry + 16, intent.byteLength);
    std::atomic_signal_fence(std::memory_order_seq_cst);
    writeLittleEndian<uint16_t>(entry + 24, static_cast<uint16_t>(RecordKind::Write));
    std::atomic_signal_fence(std::memory_order_seq_cst);
    return true;
  }
  return false;
}

void Journal::releaseDirectIntent(uint64_t volumeId, uint64_t byteOffset, uint64_t byteLength) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (header_ == nullptr) return;
  for (uint32_t i = 0; i < kDirectIntents; i++) {
    JournalIntent& slot = directIntents_[i];
    if (slot.byteLength == 0 || slot.volumeId != volumeId || slot.byteOffset != byteOffset ||
        slot.byteLength != std::max<uint64_t>(byteLength, 1)) {
      continue;
    }
    // After the record (the caller appended it): a crash before this line journals it twice.
    std::atomic_signal_fence(std::memory_order_seq_cst);
    writeLittleEndian<uint16_t>(header_ + kDirectIntentByteOffset + i * kIntentBytes + 24, 0);
    slot = JournalIntent{};
    return;
  }
}

void Journal::setIntent(uint32_t index, const JournalIntent& intent) noexcept {
  uint8_t* entry = header_ + kIntentByteOffset + index * kIntentBytes;
  writeLittleEndian<uint64_t>(entry, intent.volumeId);
  writeLittleEndian<uint64_t>(entry + 8, intent.byteOffset);
  writeLittleEndian<uint64_t>(entry + 16, intent.byteLength);
  writeLittleEndian<uint16_t>(entry + 24, static_cast<uint16_t>(intent.kind));
}

void Journal::publishIntents(uint32_t count) noexcept {
  // The entries (or, for 0, the records) before the count; the count before the caller's next
  // stores. A SIGKILL stops the thread at an instruction boundary and every store retired before
  // it reaches the shared or file mapping, so only the compiler's order matters here (a signal
  // fence: no instruction). Power loss is not covered (the volume's own flush is).
  std::atomic_signal_fence(std::memory_order_seq_cst);
  writeLittleEndian<uint32_t>(header_ + kIntentCountByteOffset, count);
  std::atomic_signal_fence(std::memory_order_seq_cst);
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

void Journal::writeRecordHeader(uint64_t ringOffset, RecordKind kind, uint64_t sequence,
                                uint64_t volumeId, uint64_t byteOffset, uint32_t byteLength,
                                uint16_t flags, uint32_t dataCrc, uint32_t payloadBytes) noexcept {
  uint8_t bytes[kRecordHeaderBytes];
  writeLittleEndian<uint32_t>(bytes, kRecordMagic);
  writeLittleEndian<uint64_t>(bytes + 8, sequence);
  writeLittleEndian<uint64_t>(bytes + 16, volumeId);
  writeLittleEndian<uint64_t>(bytes + 24, byteOffset);
  writeLittleEndian<uint32_t>(bytes + 32, byteLength);
  writeLittleEndian<uint16_t>(bytes + 36, static_cast<uint16_t>(kind));
  writeLittleEndian<uint16_t>(bytes + 38, flags);
  writeLittleEndian<uint32_t>(bytes + 40, dataCrc);
  writeLittleEndian<uint32_t>(bytes + 44, payloadBytes);
  writeLittleEndian<uint32_t>(bytes + 4, crc32c(0, bytes + 8, kRecordHeaderBytes - 8));
  std::memcpy(ring_ + ringOffset, bytes, kRecordHeaderBytes);
}

// Reads the record expected at ringOffset (skipping an implicit or WRAP filler first) and checks
// it: magic, header CRC, sequence, and that it lies inside the ring and inside bytesAvailable.
bool Journal::stepAt(uint64_t ringOffset, uint64_t expectedSequence, uint64_t bytesAvailable,
                     Step& step) const noexcept {
  const uint64_t capacity = capacityBytes_;
  step = Step{};
  uint64_t offset = ringOffset;
  uint64_t consumed = 0;
  // At most two headers: an optional WRAP filler, then the record.
  for (int attempt = 0; attempt < 2; attempt++) {
    if (capacity - offset < kRecordHeaderBytes) {
      if (attempt == 1 || offset == 0) {
        step.failure = "ring too small for a record header";
        return false;
      }
      consumed += capacity - offset;  // implicit filler
      offset = 0;
    }
    const uint8_t* bytes = ring_ + offset;
    if (readLittleEndian<uint32_t>(bytes) != kRecordMagic) {
      step.failure = "bad record magic";
      return false;
    }
    if (readLittleEndian<uint32_t>(bytes + 4) != crc32c(0, bytes + 8, kRecordHeaderBytes - 8)) {
      step.failure = "record header checksum mismatch";
      return false;
    }
    step.sequence = readLittleEndian<uint64_t>(bytes + 8);
    step.volumeId = readLittleEndian<uint64_t>(bytes + 16);
    step.byteOffset = readLittleEndian<uint64_t>(bytes + 24);
    step.byteLength = readLittleEndian<uint32_t>(bytes + 32);
    step.kind = readLittleEndian<uint16_t>(bytes + 36);
    step.flags = readLittleEndian<uint16_t>(bytes + 38);
    step.dataCrc = readLittleEndian<uint32_t>(bytes + 40);
    step.payloadBytes = readLittleEndian<uint32_t>(bytes + 44);
    if (step.sequence != expectedSequence) {
      step.failure = "unexpected sequence";
      return false;
    }
    const uint64_t bytesOfRecord = recordBytes(step.payloadBytes);
    if (step.kind == static_cast<uint16_t>(RecordKind::Wrap)) {
      // A filler runs exactly to the end of the ring and never follows another filler.
      if (attempt == 1 || offset == 0 || bytesOfRecord != capacity - offset) {
        step.failure = "misplaced wrap record";
        return false;
      }
      consumed += bytesOfRecord;
      offset = 0;
      continue;
    }
    if (step.payloadBytes > maxRecordBytes_ || bytesOfRecord > capacity - offset) {
      step.failure = "record length out of bounds";
      return false;
    }
    consumed += bytesOfRecord;
    if (consumed > bytesAvailable) {
      step.failure = "record runs past the used part of the ring";
      return false;
    }
    step.recordOffset = offset;
    step.consumedBytes = consumed;
    step.nextOffset = offset + bytesOfRecord == capacity ? 0 : offset + bytesOfRecord;
    return true;
  }
  step.failure = "wrap record not followed by a record";
  return false;
}

Journal::Step Journal::stepOrThrow(uint64_t ringOffset, uint64_t expectedSequence,
                                   uint64_t bytesAvailable) const {
  Step step;
  if (!stepAt(ringOffset, expectedSequence, bytesAvailable, step)) {
    throw Error(Code::ERR_JOURNAL_CHECKSUM,
                "journal record " + std::to_string(expectedSequence) + " at ring offset " +
                    std::to_string(ringOffset) + ": " + step.failure);
  }
  return step;
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

Journal::Placement Journal::placementFor(uint64_t bytesOfRecord) const noexcept {
  const uint64_t capacity = capacityBytes_;
  if (usedBytes_ == 0) return Placement{bytesOfRecord <= capacity, true, 0, 0};
  const uint64_t endRoom = capacity - tailOffset_;
  if (bytesOfRecord <= endRoom && usedBytes_ + bytesOfRecord <= capacity) {
    return Placement{true, false, 0, tailOffset_};
  }
  if (usedBytes_ + endRoom + bytesOfRecord <= capacity) {
    return Placement{true, false, endRoom, 0};
  }
  return Placement{false, false, 0, 0};
}

bool Journal::hasRoomFor(uint32_t payloadBytes) const {
  std::lock_guard<std::mutex> lock(mutex_);
  checkOpen();
  if (payloadBytes > maxRecordBytes_) return false;
  return placementFor(recordBytes(payloadBytes)).fits;
}

uint64_t Journal::append(RecordKind kind, uint64_t volumeId, uint64_t byteOffset,
                         uint32_t byteLength, const void* data, uint32_t payloadBytes,
                         uint16_t flags) {
  std::lock_guard<std::mutex> lock(mutex_);
  checkOpen();
  if (kind == RecordKind::Wrap) throw ArgumentError("journal append: WRAP is reserved for fillers");
  if (payloadBytes > 0 && data == nullptr) {
    throw ArgumentError("journal append: data is null but payloadBytes is " +
                        std::to_string(payloadBytes));
  }
  if (payloadBytes > maxRecordBytes_) {
    throw Error(Code::ERR_JOURNAL_RECORD_TOO_LARGE,
                "journal record of " + std::to_string(payloadBytes) +
                    " payload bytes exceeds maxRecordBytes " + std::to_string(maxRecordBytes_));
  }
  const uint64_t bytesOfRecord = recordBytes(payloadBytes);
  const Placement placement = placementFor(bytesOfRecord);
  if (!placement.fits) {
    fullCount_++;
    return 0;
  }
  if (placement.restart) {
    headOffset_ = tailOffset_ = 0;
    // The cached read offset may point at the old tail.
    readCacheSequence_ = 0;
  }
  const uint64_t sequence = nextSequence_;
  if (placement.fillerBytes >= kRecordHeaderBytes) {
    writeRecordHeader(tailOffset_, RecordKind::Wrap, sequence, 0, 0, 0, 0, 0,
                      static_cast<uint32_t>(placement.fillerBytes - kRecordHeaderBytes));
  }
  uint32_t dataCrc = 0;
  if (payloadBytes > 0) {
    std::memcpy(ring_ + placement.recordOffset + kRecordHeaderBytes, data, payloadBytes);
    dataCrc = crc32c(0, ring_ + placement.recordOffset + kRecordHeaderBytes, payloadBytes);
  }
  // Payload before header: a header that checks out vouches for its payload after a crash.
  std::atomic_thread_fence(std::memory_order_release);
  writeRecordHeader(placement.recordOffset, kind, sequence, volumeId, byteOffset, byteLength,
                    flags, dataCrc, payloadBytes);
  std::atomic_thread_fence(std::memory_order_release);

  usedBytes_ += placement.fillerBytes + bytesOfRecord;
  const uint64_t endOffset = placement.recordOffset + bytesOfRecord;
  tailOffset_ = endOffset == capacityBytes_ ? 0 : endOffset;
  nextSequence_ = sequence + 1;
  BM_ASSERT(usedBytes_ <= capacityBytes_);
  publishCursors();
  appendCount_++;
  return sequence;
}

size_t Journal::readFrom(uint64_t fromSequence, size_t maxRecords, JournalRecord* records,
                         uint8_t* payload, uint64_t payloadCapacity) {
  return readFrom(fromSequence, maxRecords, records, payload, payloadCapacity, 0, UINT64_MAX);
}

uint64_t Journal::ringBytesFrom(uint64_t fromSequence) const {
  std::lock_guard<std::mutex> lock(mutex_);
  checkOpen();
  if (fromSequence >= nextSequence_) return 0;
  if (readCacheSequence_ != 0 && readCacheSequence_ == fromSequence && readCacheSequence_ >= headSequence_) {
    const uint64_t distance = (tailOffset_ + capacityBytes_ - readCacheOffset_) % capacityBytes_;
    return distance == 0 && fromSequence == headSequence_ ? usedBytes_ : distance;
  }
  return usedBytes_;
}

size_t Journal::readFrom(uint64_t fromSequence, size_t maxRecords, JournalRecord* records,
                         uint8_t* payload, uint64_t payloadCapacity, uint32_t gapBytes,
                         uint64_t maxDataBytes, bool verifyData) {
  std::lock_guard<std::mutex> lock(mutex_);
  checkOpen();
  if (fromSequence < headSequence_) {
    throw Error(Code::ERR_JOURNAL_RELEASED,
                "journal sequence " + std::to_string(fromSequence) +
                    " was released (oldest held is " + std::to_string(headSequence_) + ")");
  }
  if (fromSequence > nextSequence_) {
    throw Error(Code::ERR_JOURNAL_NOT_YET,
                "journal sequence " + std::to_string(fromSequence) +
                    " is not written yet (next is " + std::to_string(nextSequence_) + ")");
  }
  if (fromSequence == nextSequence_ || maxRecords == 0) return 0;
  if (records == nullptr) throw ArgumentError("journal readFrom: records must not be null");

  // Find the ring offset of fromSequence and the used bytes from there on. The cache holds the
  // position after the last read, so a reader that follows the journal never walks from head.
  uint64_t offset = headOffset_;
  uint64_t bytesAfter = usedBytes_;
  uint64_t sequence = headSequence_;
  if (readCacheSequence_ != 0 && readCacheSequence_ >= headSequence_ &&
      readCacheSequence_ <= fromSequence) {
    offset = readCacheOffset_;
    sequence = readCacheSequence_;
    // Used bytes from the cached offset to the tail: the ring distance, except when the ring is
    // completely full and the cache sits at head (distance 0 would mean empty).
    const uint64_t distance = (tailOffset_ + capacityBytes_ - offset) % capacityBytes_;
    bytesAfter = distance == 0 && sequence == headSequence_ ? usedBytes_ : distance;
  }
  for (; sequence < fromSequence; sequence++) {
    const Step step = stepOrThrow(offset, sequence, bytesAfter);
    bytesAfter -= step.consumedBytes;
    offset = step.nextOffset;
  }

  size_t copied = 0;
  uint64_t payloadUsed = 0;
  uint64_t dataUsed = 0;
  while (copied < maxRecords && sequence < nextSequence_) {
    const Step step = stepOrThrow(offset, sequence, bytesAfter);
    if (gapBytes > payloadCapacity - payloadUsed) break;
    if (step.payloadBytes > payloadCapacity - payloadUsed - gapBytes) break;
    if (step.payloadBytes > maxDataBytes - dataUsed) break;
    payloadUsed += gapBytes;
    if (step.payloadBytes > 0 && payload == nullptr) {
      throw ArgumentError("journal readFrom: payload must not be null");
    }
    const uint8_t* source = ring_ + step.recordOffset + kRecordHeaderBytes;
    if (step.payloadBytes > 0) {
      std::memcpy(payload + payloadUsed, source, step.payloadBytes);
      // Verify the copy the caller gets, not the ring bytes, which could change underneath.
      if (verifyData && crc32c(0, payload + payloadUsed, step.payloadBytes) != step.dataCrc) {
        throw Error(Code::ERR_JOURNAL_CHECKSUM,
                    "journal record " + std::to_string(sequence) + ": data checksum mismatch");
      }
    } else if (step.dataCrc != 0) {
      throw Error(Code::ERR_JOURNAL_CHECKSUM,
                  "journal record " + std::to_string(sequence) + ": data checksum without data");
    }
    JournalRecord& record = records[copied];
    record.sequence = step.sequence;
    record.volumeId = step.volumeId;
    record.byteOffset = step.byteOffset;
    record.byteLength = step.byteLength;
    record.kind = static_cast<RecordKind>(step.kind);
    record.flags = step.flags;
    record.dataCrc = step.dataCrc;
    record.payloadOffset = payloadUsed;
    record.payloadBytes = step.payloadBytes;
    payloadUsed += step.payloadBytes;
    dataUsed += step.payloadBytes;
    bytesAfter -= step.consumedBytes;
    offset = step.nextOffset;
    sequence++;
    copied++;
  }
  readCacheSequence_ = sequence;
  readCacheOffset_ = offset;
  return copied;
}

uint64_t Journal::release(uint64_t throughSequence) {
  std::lock_guard<std::mutex> lock(mutex_);
  checkOpen();
  if (throughSequence < headSequence_ || headSequence_ == nextSequence_) return 0;
  const uint64_t last = std::min(throughSequence, nextSequence_ - 1);
  uint64_t offset = headOffset_;
  uint64_t used = usedBytes_;
  if (last == nextSequence_ - 1) {
    // Everything goes: no need to walk.
    offset = tailOffset_;
    used = 0;
  } else {
    // Walk first, commit after: a damaged record leaves the cursors as they were.
    for (uint64_t sequence = headSequence_; sequence <= last; sequence++) {
      const Step step = stepOrThrow(offset, sequence, used);
      used -= step.consumedBytes;
      offset = step.nextOffset;
    }
  }
  const uint64_t releasedCount = last - headSequence_ + 1;
  headSequence_ = last + 1;
  headOffset_ = offset;
  usedBytes_ = used;
  BM_ASSERT(usedBytes_ != 0 || headSequence_ == nextSequence_);
  publishCursors();
  return releasedCount;
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
