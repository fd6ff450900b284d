// Little-endian loads and stores for the on-region formats (journal, volume superblock, bitmap
// serialization). The formats are little endian by definition; on a little-endian host these
// compile to plain unaligned moves.
#pragma once

#include <bit>
#include <cstdint>
#include <cstring>
#include <type_traits>

namespace bm {

template <typename T>
inline T readLittleEndian(const uint8_t* bytes) noexcept {
  static_assert(std::is_unsigned_v<T>);
  T value;
  std::memcpy(&value, bytes, sizeof value);
  if constexpr (std::endian::native == std::endian::big) {
    T swapped = 0;
    for (size_t i = 0; i < sizeof value; i++) swapped = T(swapped << 8) | T((value >> (8 * i)) & 0xFF);
    value = swapped;
  }
  return value;
}

template <typename T>
inline void writeLittleEndian(uint8_t* bytes, T value) noexcept {
  static_assert(std::is_unsigned_v<T>);
  if constexpr (std::endian::native == std::endian::big) {
    T swapped = 0;
    for (size_t i = 0; i < sizeof value; i++) swapped = T(swapped << 8) | T((value >> (8 * i)) & 0xFF);
    value = swapped;
  }
  std::memcpy(bytes, &value, sizeof value);
}

}  // namespace bm
