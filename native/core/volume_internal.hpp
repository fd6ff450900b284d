// Notes on the design
// -------------------
// What the three parts of the Volume share, included by them and nothing else: volume.cpp
// (superblock, open and close, reads, flush, stats), volume_directory.cpp (the bitmap directory
// and its cross-process lock) and volume_write.cpp (the write path, steps 1-6 of volume.hpp).
// The superblock layout is described in volume.cpp.
#pragma once

#include <atomic>
#include <cstdint>
#include <string>

namespace bm::volume_internal {

// The shared word bumped after every directory change (volume.cpp, volume_directory.cpp).
constexpr uint64_t kGenerationByteOffset = 64;

inline std::atomic_ref<uint32_t> sharedWord(uint8_t* superblock, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(superblock + byteOffset));
}

// Internal linkage, as when it was private to volume.cpp: GCC 12 at -O3 reports a false
// -Wrestrict inside std::string for a copy with external linkage. Inline, so that the file that
// does not use it (volume_directory.cpp) gets no unused-function warning.
namespace {

inline std::string rangeText(uint64_t byteOffset, uint64_t byteLength) {
  return "[" + std::to_string(byteOffset) + ", +" + std::to_string(byteLength) + ")";
}

}  // namespace

}  // namespace bm::volume_internal
