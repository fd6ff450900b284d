// Notes on the design
// -------------------
// What the parts of RaidGroup split from raid.cpp share, included by them and nothing else:
// raid.cpp (member states and member I/O, the raid5 map, reads and writes), raid_metadata.cpp
// (format, open, the extent table), raid_rebuild.cpp (failing and rebuilding a member),
// raid_sparing.cpp and raid_workdisk.cpp (the member table's constants). The
// member table is at kMemberTableOffset of the metadata region, one kMemberEntryBytes entry per
// member: diskId u64, state u32 at 8, rebuild cursor u64 at 16.
#pragma once

#include <atomic>
#include <cstdint>

#include "raid.hpp"

namespace bm::raid_internal {

inline constexpr uint64_t kMemberTableOffset = 256;
inline constexpr uint64_t kMemberEntryBytes = 32;
inline constexpr uint64_t kEntryDiskId = 0;
inline constexpr uint64_t kEntryState = 8;
inline constexpr uint64_t kEntryCursor = 16;
inline constexpr uint32_t kNoMember = UINT32_MAX;

inline std::atomic_ref<uint32_t> word32(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + byteOffset));
}

inline std::atomic_ref<uint64_t> word64(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + byteOffset));
}

inline bool allZero(const uint8_t* bytes, uint64_t byteLength) noexcept {
  for (uint64_t i = 0; i < byteLength; i++) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

inline void bump(std::atomic<uint64_t>& counter, uint64_t value = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
}

inline const char* levelName(RaidLevel level) noexcept {
  switch (level) {
    case RaidLevel::Single: return "single";
    case RaidLevel::Raid1: return "raid1";
    default: return "raid5";
  }
}

}  // namespace bm::raid_internal
