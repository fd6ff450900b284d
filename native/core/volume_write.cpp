// Notes on the design
// -------------------
// The write path of a Volume, steps 1-6 of volume.hpp: write, writeZeroes and trim as
// one-request batches, writeBatch, the direct writes (beginDirectWrite/commitDirectWrite), the
// journal intents, and the store and record halves of each request. One thread drives a Volume
// object at a time (volume.cpp): the counters are updated without locked instructions.
#include <algorithm>
#include <atomic>
#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <emmintrin.h>
#endif

#include "errors.hpp"
#include "volume.hpp"
#include "volume_internal.hpp"

namespace bm {

namespace {

using volume_internal::rangeText;

// Writes of at least this many bytes are copied with non-temporal stores (x86-64): a large write
// lands on memory that is not in cache, and ordinary stores would first read every destination
// line (read for ownership) only to overwrite it, doubling the memory traffic. The batch's full
// fence (writeBatch) orders these stores before the bitmap marks, as it does ordinary ones.
constexpr uint64_t kStreamingCopyMinBytes = 256 * 1024;

void copyIntoStore(uint8_t* target, const uint8_t* source, uint64_t byteLength) noexcept {
#if defined(__x86_64__)
  if (byteLength >= kStreamingCopyMinBytes) {
    const uint64_t head = (16 - (reinterpret_cast<uintptr_t>(target) & 15)) & 15;
    std::memcpy(target, source, head);
    target += head;
    source += head;
    byteLength -= head;
    const uint64_t blockCount = byteLength / 64;
    for (uint64_t i = 0; i < blockCount; i++) {
      const __m128i a = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source));
      const __m128i b = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + 16));
      const __m128i c = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + 32));
      const __m128i d = _mm_loadu_si128(reinterpret_cast<const __m128i*>(source + 48));
      _mm_stream_si128(reinterpret_cast<__m128i*>(target), a);
      _mm_stream_si128(reinterpret_cast<__m128i*>(target + 16), b);
      _mm_stream_si128(reinterpret_cast<__m128i*>(target + 32), c);
      _mm_stream_si128(reinterpret_cast<__m128i*>(target + 48), d);
      source += 64;
      target += 64;
    }
    std::memcpy(target, source, byteLength - blockCount * 64);
    // Non-temporal stores are weakly ordered; the fence makes them ordinary again for anyone
    // who reads the volume next (the batch fence follows too, but this keeps the helper whole).
    _mm_sfence();
    return;
  }
#endif
  std::memcpy(target, source, byteLength);
}

const char* operationName(RecordKind kind) noexcept {
  switch (kind) {
    case RecordKind::Write:
      return "write";
    case RecordKind::Zero:
      return "writeZeroes";
    case RecordKind::Trim:
      return "trim";
    default:
      return "request";
  }
}

}  // namespace

uint64_t Volume::write(uint64_t byteOffset, const uint8_t* source, uint64_t byteLength) {
  const WriteRequest request{byteOffset, byteLength, source, RecordKind::Write};
  uint64_t sequence = 0;
  writeBatch(&request, 1, &sequence);
  return sequence;
}

uint64_t Volume::writeZeroes(uint64_t byteOffset, uint64_t byteLength, bool mayPunchHole) {
  const WriteRequest request{byteOffset, byteLength, nullptr, RecordKind::Zero, mayPunchHole};
  uint64_t sequence = 0;
  writeBatch(&request, 1, &sequence);
  return sequence;
}

uint64_t Volume::trim(uint64_t byteOffset, uint64_t byteLength) {
  const WriteRequest request{byteOffset, byteLength, nullptr, RecordKind::Trim};
  uint64_t sequence = 0;
  writeBatch(&request, 1, &sequence);
  return sequence;
}

size_t Volume::writeBatch(const WriteRequest* requests, size_t count, uint64_t* sequencesOut) {
  checkOpen();
  if (count == 0) return 0;
  if (requests == nullptr) throw ArgumentError("writeBatch: requests must not be null");
  // Step 1 for the whole batch: nothing changes unless every request is valid.
  for (size_t i = 0; i < count; i++) {
    const WriteRequest& request = requests[i];
    const char* operation = operationName(request.kind);
    if (request.kind != RecordKind::Write && request.kind != RecordKind::Zero &&
        request.kind != RecordKind::Trim) {
      throw ArgumentError("writeBatch: request " + std::to_string(i) + " has kind " +
                          std::to_string(static_cast<unsigned>(request.kind)) +
                          "; only Write, Zero and Trim are requests");
    }
    if (request.kind == RecordKind::Write && request.byteLength > 0 && request.data == nullptr) {
      throw ArgumentError("writeBatch: request " + std::to_string(i) + " (write " +
                          rangeText(request.byteOffset, request.byteLength) + ") has no data");
    }
    try {
      checkRequest(operation, request.byteOffset, request.byteLength);
    } catch (const RangeError& error) {
      if (count == 1) throw;
      throw RangeError("writeBatch: request " + std::to_string(i) + " of " +
                       std::to_string(count) + ": " + error.what());
    }
  }
  refreshDirectoryIfChanged();
  if (interceptorRequired_ && interceptor_ == nullptr) {
    throw Error(Code::ERR_SNAPSHOT_DETACHED,
                "the volume has snapshots and this volume object has no snapshot store "
                "attached: open the store before writing");
  }

  // Steps 2-4 for every request, then one full fence, then steps 5-6 for every request. The
  // order inside each write is kept (its data is stored before its bits are set and before its
  // record is appended), but the batch pays for one store-buffer drain instead of one per write:
  // the fence is what lets step 5 skip words already set (Bitmap::markBytesAfterFence), so the
  // steady state of a workload that rewrites dirty tracks issues no locked instruction at all.
  BatchTally tally;
  Journal* const journal = journal_.get();
  if (journal != nullptr) listIntents(*journal, requests, count);
  for (size_t i = 0; i < count; i++) storeOne(requests[i], tally);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  size_t fullCount = 0;
  for (size_t i = 0; i < count; i++) {
    const uint64_t sequence = recordOne(requests[i], tally);
    if (sequence == kJournalFull) fullCount++;
    if (sequencesOut != nullptr) sequencesOut[i] = sequence;
  }
  // Every record is appended (or the journal was full: the pairs fall back to their bitmaps).
  if (journal != nullptr) journal->publishIntents(0);
  // One writer thread per Volume object (the design note): the write-path counters are plain
  // relaxed load+store, readable from any thread, with no locked instruction per write.
  auto add = [](std::atomic<uint64_t>& counter, uint64_t value) {
    if (value != 0) counter.store(counter.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
  };
  add(counters_.batchCount, 1);
  add(counters_.writeCount, tally.writeCount);
  add(counters_.writeBytes, tally.writeBytes);
  add(counters_.zeroCount, tally.zeroCount);
  add(counters_.zeroBytes, tally.zeroBytes);
  add(counters_.trimCount, tally.trimCount);
  add(counters_.trimBytes, tally.trimBytes);
  add(counters_.bitmapMarkCount, tally.bitmapMarkCount);
  add(counters_.journalAppendCount, tally.journalAppendCount);
  add(counters_.journalFullCount, tally.journalFullCount);
  if (backing_ != nullptr) backing_->finishBatch();
  return fullCount;
}

uint8_t* Volume::beginDirectWrite(uint64_t byteOffset, uint64_t byteLength) {
  checkOpen();
  checkRequest("write", byteOffset, byteLength);
  if (byteLength == 0) return nullptr;
  refreshDirectoryIfChanged();
  if (interceptorRequired_ && interceptor_ == nullptr) {
    throw Error(Code::ERR_SNAPSHOT_DETACHED,
                "the volume has snapshots and this volume object has no snapshot store "
                "attached: open the store before writing");
  }
  if (backing_ != nullptr) return nullptr;
  if (interceptor_ != nullptr && interceptor_->mayRoute()) return nullptr;
  // A journaled volume lists the write as an intent until its record is appended at commit
  // (journal.hpp): bytes that land and are never recorded are journaled again after a crash.
  // Every direct slot taken: the caller takes write().
  if (journal_ != nullptr && !journal_->claimDirectIntent(JournalIntent{volumeId_, byteOffset, byteLength, RecordKind::Write})) {
    return nullptr;
  }
  if (interceptor_ != nullptr) {
    // Step 2 before any byte lands: the old bytes go to every snapshot that still needs them.
    try {
      interceptor_->preserve(*this, byteOffset, byteLength);
    } catch (...) {
      if (journal_ != nullptr) journal_->releaseDirectIntent(volumeId_, byteOffset, byteLength);
      throw;
    }
  }
  // Bits before bytes: a caller killed while the bytes land leaves them dirty (conservative).
  for (uint32_t i = 0; i < recordingCount_; i++) recording_[i]->markBytes(byteOffset, byteLength);
  return data_ + byteOffset;
}

uint64_t Volume::commitDirectWrite(uint64_t byteOffset, uint64_t byteLength) {
  checkOpen();
  checkRequest("write", byteOffset, byteLength);
  refreshDirectoryIfChanged();
  if (interceptor_ != nullptr) {
    // A snapshot created while the bytes landed: it takes the range as it is now (the write was
    // in flight when it was created). Already-preserved chunks cost one compare.
    interceptor_->preserve(*this, byteOffset, byteLength);
  }
  BatchTally tally;
  tally.writeCount = 1;
  tally.writeBytes = byteLength;
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const WriteRequest request{byteOffset, byteLength, data_ + byteOffset, RecordKind::Write};
  const uint64_t sequence = recordOne(request, tally);
  if (journal_ != nullptr) journal_->releaseDirectIntent(volumeId_, byteOffset, byteLength);
  auto add = [](std::atomic<uint64_t>& counter, uint64_t value) {
    if (value != 0) counter.store(counter.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
  };
  add(counters_.batchCount, 1);
  add(counters_.writeCount, tally.writeCount);
  add(counters_.writeBytes, tally.writeBytes);
  add(counters_.bitmapMarkCount, tally.bitmapMarkCount);
  add(counters_.journalAppendCount, tally.journalAppendCount);
  add(counters_.journalFullCount, tally.journalFullCount);
  return sequence;
}

void Volume::listIntents(Journal& journal, const WriteRequest* requests, size_t count) noexcept {
  // Before the first byte is stored: the ranges a crash could leave in the store without a
  // record (journal.hpp, intents). A batch longer than the area lists its tail as one range.
  const uint32_t listed = static_cast<uint32_t>(std::min<size_t>(count, Journal::kMaxIntents));
  const bool covered = count > Journal::kMaxIntents;
  for (uint32_t i = 0; i < listed - (covered ? 1 : 0); i++) {
    journal.setIntent(i, JournalIntent{volumeId_, requests[i].byteOffset, requests[i].byteLength, requests[i].kind});
  }
  if (covered) {
    uint64_t first = UINT64_MAX;
    uint64_t end = 0;
    for (size_t i = listed - 1; i < count; i++) {
      first = std::min(first, requests[i].byteOffset);
      end = std::max(end, requests[i].byteOffset + requests[i].byteLength);
    }
    journal.setIntent(listed - 1, JournalIntent{volumeId_, first, end - first, RecordKind::Write});
  }
  journal.publishIntents(listed);
}

void Volume::storeOne(const WriteRequest& request, BatchTally& tally) {
  const uint64_t byteOffset = request.byteOffset;
  const uint64_t byteLength = request.byteLength;
  const uint8_t* source = request.kind == RecordKind::Write ? request.data : nullptr;

  // Steps 2 and 3: the copy-on-write and diversion seams.
  bool routed = false;
  if (interceptor_ != nullptr) {
    interceptor_->preserve(*this, byteOffset, byteLength);
    routed = interceptor_->route(*this, byteOffset, byteLength, source, request.kind);
  }

  // Step 4: the store.
  if (!routed && byteLength > 0) {
    switch (request.kind) {
      case RecordKind::Write:
        copyIntoStore(data_ + byteOffset, source, byteLength);
        break;
      case RecordKind::Zero:
        if (request.mayPunchHole) {
          region_->trim(dataByteOffset_ + byteOffset, byteLength);
        } else {
          std::memset(data_ + byteOffset, 0, byteLength);
        }
        break;
      default:
        region_->trim(dataByteOffset_ + byteOffset, byteLength);
        break;
    }
    if (backing_ != nullptr) backing_->store(byteOffset, source, byteLength);
  }
  switch (request.kind) {
    case RecordKind::Write:
      tally.writeCount++;
      tally.writeBytes += byteLength;
      break;
    case RecordKind::Zero:
      tally.zeroCount++;
      tally.zeroBytes += byteLength;
      break;
    default:
      tally.trimCount++;
      tally.trimBytes += byteLength;
      break;
  }
}

uint64_t Volume::recordOne(const WriteRequest& request, BatchTally& tally) {
  const uint64_t byteOffset = request.byteOffset;
  const uint64_t byteLength = request.byteLength;

  // Step 5: every recording bitmap, routed or not: a diverted write still changed the volume.
  for (uint32_t i = 0; i < recordingCount_; i++) {
    recording_[i]->markBytesAfterFence(byteOffset, byteLength);
  }
  if (byteLength > 0) tally.bitmapMarkCount += recordingCount_;

  // Step 6: the journal. A record the journal cannot hold (larger than its records may be, or a
  // zero/trim longer than the record's 32-bit length) is reported like a full journal: the pair
  // falls back to its bitmap, which step 5 has already marked.
  if (!journal_) return 0;
  const bool withPayload = request.kind == RecordKind::Write;
  const bool representable = withPayload ? byteLength <= journal_->maxRecordBytes()
                                         : byteLength <= UINT32_MAX;
  uint64_t sequence = 0;
  if (representable) {
    sequence = journal_->append(request.kind, volumeId_, byteOffset,
                                static_cast<uint32_t>(byteLength),
                                withPayload ? request.data : nullptr,
                                withPayload ? static_cast<uint32_t>(byteLength) : 0);
  }
  if (sequence == 0) {
    // A record the journal can never hold counts as full there too: its readers (the pairs)
    // see the stream broken, as for a ring without room.
    if (!representable) journal_->countUnrepresentable();
    tally.journalFullCount++;
    return kJournalFull;
  }
  tally.journalAppendCount++;
  return sequence;
}

}  // namespace bm
