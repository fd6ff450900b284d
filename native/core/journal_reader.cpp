// Notes on the design
// -------------------
// The reader side of a Journal: the walk that finds and checks one record (stepAt, under the
// ring invariants of journal.cpp's design note), readFrom with its cached read position,
// ringBytesFrom, and release, which walks before it commits so a damaged record leaves the
// cursors as they were.
#include <algorithm>
#include <cstring>
#include <mutex>
#include <string>

#include "byte_order.hpp"
#include "crc32c.hpp"
#include "errors.hpp"
#include "journal.hpp"
#include "journal_internal.hpp"

namespace bm {

using namespace journal_internal;

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

}  // namespace bm
