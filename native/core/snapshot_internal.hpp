// Notes on the design
// -------------------
// What snapshot.cpp (format, open and close, the snapshot directory) and snapshot_cow.cpp (the
// chunk maps, the chunk store allocator, preserve, snapshot reads and restore) share, and
// nothing else includes: the layout of the store header, its shared words and the
// cross-process store lock.
//
// Header bytes (little endian): [0,8) magic "BMSNAPS1", [8,12) version, [12,16) kMaxSnapshots,
// [16,24) chunkBytes, [24,32) capacityBytes, [32,40) volumeId, [40,48) storeChunkCount,
// [48,56) reserved, [56,60) crc32c of [0,56). Shared words: [64,68) lock (holder pid),
// [68,72) create epoch, [72,76) valid mask (bit per valid snapshot), [80,88) high-water mark,
// [88,96) free stack top, then counters [96,136): preserveCount, preserveBytes, sharedCount,
// zeroChunkCount, overflowCount. The directory starts at 256: kMaxSnapshots entries of 96
// bytes: state u32, id u64 at 8, createdMs u64 at 16, preservedChunkCount u64 at 24,
// name[48] at 32.
//
// Every shared word is accessed through std::atomic_ref, so processes that map the same store
// see whole values. Counters and allocator words change under the lock only.
#pragma once

#include <signal.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <thread>

#include "errors.hpp"
#include "snapshot.hpp"

namespace bm::snapshot_internal {

inline constexpr char kMagicBytes[8] = {'B', 'M', 'S', 'N', 'A', 'P', 'S', '1'};
inline constexpr uint32_t kVersion = 1;
inline constexpr uint64_t kHeaderBytes = 4096;
inline constexpr uint64_t kCrcByteOffset = 56;
inline constexpr uint64_t kLockByteOffset = 64;
inline constexpr uint64_t kEpochByteOffset = 68;
inline constexpr uint64_t kValidMaskByteOffset = 72;
inline constexpr uint64_t kHighWaterByteOffset = 80;
inline constexpr uint64_t kFreeTopByteOffset = 88;
inline constexpr uint64_t kPreserveCountByteOffset = 96;
inline constexpr uint64_t kPreserveBytesByteOffset = 104;
inline constexpr uint64_t kSharedCountByteOffset = 112;
inline constexpr uint64_t kZeroChunkCountByteOffset = 120;
inline constexpr uint64_t kOverflowCountByteOffset = 128;
inline constexpr uint64_t kDirectoryByteOffset = 256;
inline constexpr uint64_t kEntryBytes = 96;
inline constexpr uint64_t kEntryNameBytes = 48;
inline constexpr uint64_t kPageBytes = 4096;
// A lock held longer than this by a live process is a broken invariant.
inline constexpr auto kLockTimeout = std::chrono::seconds(30);
// The create epoch is a u32; the last values are kept back so that it never wraps.
inline constexpr uint32_t kMaxEpoch = UINT32_MAX - 1;

static_assert(kDirectoryByteOffset + SnapshotStore::kMaxSnapshots * kEntryBytes <= kHeaderBytes);
static_assert(SnapshotStore::kMaxSnapshots <= 32, "the valid mask is one u32");
static_assert(SnapshotStore::kMaxNameBytes < kEntryNameBytes);

inline std::atomic_ref<uint32_t> word32(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + byteOffset));
}

inline std::atomic_ref<uint64_t> word64(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + byteOffset));
}

// Counters and allocator words have one writer at a time (the lock holder).
inline void addRelaxed(uint8_t* base, uint64_t byteOffset, uint64_t value) noexcept {
  auto word = word64(base, byteOffset);
  word.store(word.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
}

inline uint8_t* entryAt(uint8_t* header, uint32_t slot) noexcept {
  return header + kDirectoryByteOffset + slot * kEntryBytes;
}

inline SnapshotState entryState(uint8_t* header, uint32_t slot) noexcept {
  return static_cast<SnapshotState>(word32(entryAt(header, slot), 0).load(std::memory_order_acquire));
}

}  // namespace bm::snapshot_internal

namespace bm {

// The cross-process store lock (see the design note). Taking it over from a dead holder runs
// recovery before the new holder goes on.
class SnapshotStore::Lock {
 public:
  explicit Lock(const SnapshotStore& store)
      : word_(snapshot_internal::word32(store.header_, snapshot_internal::kLockByteOffset)) {
    const uint32_t self = static_cast<uint32_t>(getpid());
    const auto deadline = std::chrono::steady_clock::now() + snapshot_internal::kLockTimeout;
    uint32_t spins = 0;
    while (true) {
      uint32_t expected = 0;
      if (word_.compare_exchange_strong(expected, self, std::memory_order_acquire)) return;
      if (expected != self && kill(static_cast<pid_t>(expected), 0) != 0 && errno == ESRCH) {
        if (word_.compare_exchange_strong(expected, self, std::memory_order_acquire)) {
          // The holder died inside a locked change: rebuild the allocator from the maps.
          try {
            const_cast<SnapshotStore&>(store).recoverLocked();
          } catch (...) {
            word_.store(0, std::memory_order_release);
            throw;
          }
          return;
        }
        continue;
      }
      if (++spins < 64) {
        sched_yield();
      } else {
        std::this_thread::sleep_for(std::chrono::microseconds(100));
      }
      BM_ASSERT(std::chrono::steady_clock::now() < deadline);
    }
  }
  ~Lock() { word_.store(0, std::memory_order_release); }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;

 private:
  std::atomic_ref<uint32_t> word_;
};

}  // namespace bm
