// Notes on the design
// -------------------
// The identity and the intent area of a Journal (journal.hpp, intents): the ranges a volume
// batch may leave in the store without a record if the process dies, listed before the first
// byte is stored and cleared once every record is appended, and the direct slots that a direct
// write claims until its record is committed. A SIGKILL stops the thread at an instruction
// boundary, so only the compiler's order matters here: signal fences, no instruction. The header
// layout is in journal.cpp's design note.
#include <algorithm>
#include <atomic>
#include <mutex>

#include "byte_order.hpp"
#include "crc32c.hpp"
#include "journal.hpp"
#include "journal_internal.hpp"

namespace bm {

using namespace journal_internal;

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

}  // namespace bm
