// Notes on the design
// -------------------
// The writer side of a Journal: where the next record goes (placementFor, hasRoomFor), the
// record header, and append. The crash order of append (payload, then record header, then
// cursors) is what recovery relies on: journal.cpp's design note has the argument.
#include <atomic>
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

// Where the next record goes: `fillerBytes` at the tail are given up to reach `recordOffset`.
struct Journal::Placement {
  bool fits;
  bool restart;  // the ring is empty: head and tail move back to offset 0
  uint64_t fillerBytes;
  uint64_t recordOffset;
};

void Journal::countUnrepresentable() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  fullCount_++;
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

}  // namespace bm
