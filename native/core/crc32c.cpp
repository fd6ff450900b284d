// CRC32C with two implementations: the SSE4.2 crc32 instruction (8 bytes per instruction) and a
// portable slicing-by-8 table walk. The tables are computed at compile time, so there is no
// initialization order to worry about and no lock on first use.
#include "crc32c.hpp"

#include <array>
#include <cstring>

#include "byte_order.hpp"

#if defined(__x86_64__) || defined(__i386__)
#include <nmmintrin.h>
#define BM_CRC32C_X86 1
#endif

namespace bm {

namespace {

constexpr uint32_t kReflectedPolynomial = 0x82F63B78u;

using SliceTables = std::array<std::array<uint32_t, 256>, 8>;

constexpr SliceTables makeSliceTables() {
  SliceTables tables{};
  for (uint32_t byte = 0; byte < 256; byte++) {
    uint32_t crc = byte;
    for (int bit = 0; bit < 8; bit++) crc = (crc >> 1) ^ ((crc & 1) ? kReflectedPolynomial : 0);
    tables[0][byte] = crc;
  }
  // tables[k][b] is the CRC of byte b followed by k zero bytes: it lets one step fold 8 bytes.
  for (uint32_t byte = 0; byte < 256; byte++) {
    for (size_t k = 1; k < 8; k++) {
      const uint32_t previous = tables[k - 1][byte];
      tables[k][byte] = (previous >> 8) ^ tables[0][previous & 0xFF];
    }
  }
  return tables;
}

constexpr SliceTables kSliceTables = makeSliceTables();

#if BM_CRC32C_X86
__attribute__((target("sse4.2"))) uint32_t hardwareUpdate(uint32_t crc, const uint8_t* bytes,
                                                           size_t byteLength) noexcept {
  // Align to 8 bytes first: the 64-bit instruction is fastest on aligned loads.
  while (byteLength > 0 && (reinterpret_cast<uintptr_t>(bytes) & 7) != 0) {
    crc = _mm_crc32_u8(crc, *bytes++);
    byteLength--;
  }
  uint64_t crc64 = crc;
  while (byteLength >= 8) {
    uint64_t word;
    std::memcpy(&word, bytes, sizeof word);
    crc64 = _mm_crc32_u64(crc64, word);
    bytes += 8;
    byteLength -= 8;
  }
  crc = static_cast<uint32_t>(crc64);
  while (byteLength > 0) {
    crc = _mm_crc32_u8(crc, *bytes++);
    byteLength--;
  }
  return crc;
}

bool detectHardware() noexcept {
  __builtin_cpu_init();
  return __builtin_cpu_supports("sse4.2");
}
#else
bool detectHardware() noexcept { return false; }
#endif

uint32_t portableUpdate(uint32_t crc, const uint8_t* bytes, size_t byteLength) noexcept {
  const auto& t = kSliceTables;
  while (byteLength >= 8) {
    const uint32_t low = readLittleEndian<uint32_t>(bytes) ^ crc;
    const uint32_t high = readLittleEndian<uint32_t>(bytes + 4);
    crc = t[7][low & 0xFF] ^ t[6][(low >> 8) & 0xFF] ^ t[5][(low >> 16) & 0xFF] ^
          t[4][low >> 24] ^ t[3][high & 0xFF] ^ t[2][(high >> 8) & 0xFF] ^
          t[1][(high >> 16) & 0xFF] ^ t[0][high >> 24];
    bytes += 8;
    byteLength -= 8;
  }
  while (byteLength > 0) {
    crc = (crc >> 8) ^ t[0][(crc ^ *bytes++) & 0xFF];
    byteLength--;
  }
  return crc;
}

// Checked once; a function-local static is thread-safe to initialize.
bool hardwareAvailable() noexcept {
  static const bool available = detectHardware();
  return available;
}

}  // namespace

uint32_t crc32cPortable(uint32_t crc, const void* data, size_t byteLength) noexcept {
  if (byteLength == 0) return crc;
  return ~portableUpdate(~crc, static_cast<const uint8_t*>(data), byteLength);
}

uint32_t crc32cHardware(uint32_t crc, const void* data, size_t byteLength) noexcept {
#if BM_CRC32C_X86
  if (!hardwareAvailable()) return 0;
  if (byteLength == 0) return crc;
  return ~hardwareUpdate(~crc, static_cast<const uint8_t*>(data), byteLength);
#else
  (void)crc;
  (void)data;
  (void)byteLength;
  return 0;
#endif
}

bool crc32cHardwareAvailable() noexcept { return hardwareAvailable(); }

uint32_t crc32c(uint32_t crc, const void* data, size_t byteLength) noexcept {
#if BM_CRC32C_X86
  if (hardwareAvailable()) {
    if (byteLength == 0) return crc;
    return ~hardwareUpdate(~crc, static_cast<const uint8_t*>(data), byteLength);
  }
#endif
  return crc32cPortable(crc, data, byteLength);
}

}  // namespace bm
