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
// The crc32 instruction has a latency of 3 cycles and a throughput of 1 per cycle, so one
// dependent chain reaches a third of what the unit can do (~8 bytes per 3 cycles, ~7-10 GB/s).
// Long inputs are therefore cut into three adjacent blocks whose CRCs run as three independent
// chains, then combined: crc(A B) = shift(crc(A), |B|) ^ crc0(B), where shift() appends |B| zero
// bytes and crc0 starts from a zero register. shift() is a linear map over GF(2), tabulated at
// compile time for the two block sizes (4 x 256 words each), as in Mark Adler's crc32c.c.
constexpr size_t kLongBlock = 8192;
constexpr size_t kShortBlock = 256;

using ShiftTable = std::array<std::array<uint32_t, 256>, 4>;
using Gf2Matrix = std::array<uint32_t, 32>;

constexpr uint32_t gf2Times(const Gf2Matrix& matrix, uint32_t vector) {
  uint32_t sum = 0;
  for (size_t i = 0; vector != 0; i++, vector >>= 1) {
    if ((vector & 1) != 0) sum ^= matrix[i];
  }
  return sum;
}

constexpr Gf2Matrix gf2Square(const Gf2Matrix& matrix) {
  Gf2Matrix square{};
  for (size_t n = 0; n < 32; n++) square[n] = gf2Times(matrix, matrix[n]);
  return square;
}

// The operator that appends `byteLength` zero bytes (a power of two) to a raw CRC register.
constexpr ShiftTable makeShiftTable(size_t byteLength) {
  Gf2Matrix op{};
  op[0] = kReflectedPolynomial;  // one zero bit
  for (size_t n = 1; n < 32; n++) op[n] = 1u << (n - 1);
  op = gf2Square(op);  // two zero bits
  op = gf2Square(op);  // four
  for (size_t bits = 4; bits < byteLength * 8; bits *= 2) op = gf2Square(op);
  ShiftTable table{};
  for (uint32_t n = 0; n < 256; n++) {
    table[0][n] = gf2Times(op, n);
    table[1][n] = gf2Times(op, n << 8);
    table[2][n] = gf2Times(op, n << 16);
    table[3][n] = gf2Times(op, n << 24);
  }
  return table;
}

constexpr ShiftTable kShiftLong = makeShiftTable(kLongBlock);
constexpr ShiftTable kShiftShort = makeShiftTable(kShortBlock);

inline uint32_t shiftCrc(const ShiftTable& table, uint32_t crc) noexcept {
  return table[0][crc & 0xFF] ^ table[1][(crc >> 8) & 0xFF] ^ table[2][(crc >> 16) & 0xFF] ^ table[3][crc >> 24];
}

__attribute__((target("sse4.2"))) inline uint64_t threeWay(uint64_t crc0, const uint8_t*& bytes, size_t& byteLength,
                                                           size_t block, const ShiftTable& shift) noexcept {
  while (byteLength >= 3 * block) {
    uint64_t crc1 = 0;
    uint64_t crc2 = 0;
    const uint8_t* end = bytes + block;
    do {
      uint64_t w0, w1, w2;
      std::memcpy(&w0, bytes, sizeof w0);
      std::memcpy(&w1, bytes + block, sizeof w1);
      std::memcpy(&w2, bytes + 2 * block, sizeof w2);
      crc0 = _mm_crc32_u64(crc0, w0);
      crc1 = _mm_crc32_u64(crc1, w1);
      crc2 = _mm_crc32_u64(crc2, w2);
      bytes += 8;
    } while (bytes < end);
    crc0 = shiftCrc(shift, static_cast<uint32_t>(crc0)) ^ crc1;
    crc0 = shiftCrc(shift, static_cast<uint32_t>(crc0)) ^ crc2;
    bytes += 2 * block;
    byteLength -= 3 * block;
  }
  return crc0;
}

__attribute__((target("sse4.2"))) uint32_t hardwareUpdate(uint32_t crc, const uint8_t* bytes,
                                                           size_t byteLength) noexcept {
  // Align to 8 bytes first: the 64-bit instruction is fastest on aligned loads.
  while (byteLength > 0 && (reinterpret_cast<uintptr_t>(bytes) & 7) != 0) {
    crc = _mm_crc32_u8(crc, *bytes++);
    byteLength--;
  }
  uint64_t crc64 = crc;
  crc64 = threeWay(crc64, bytes, byteLength, kLongBlock, kShiftLong);
  crc64 = threeWay(crc64, bytes, byteLength, kShortBlock, kShiftShort);
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
