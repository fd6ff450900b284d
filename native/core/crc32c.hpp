// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and NBD tools.
// crc32c() picks the SSE4.2 instruction when the CPU has it (checked once), else the portable
// slicing-by-8 table. Both are exported so a test can cross-check them on random input.
#pragma once

#include <cstddef>
#include <cstdint>

namespace bm {

// Continue a CRC: pass the previous result as `crc` (0 to start). Standard init/final XOR are
// applied inside, so crc32c(crc32c(0, a), b) == crc32c(0, a + b).
uint32_t crc32c(uint32_t crc, const void* data, size_t byteLength) noexcept;
uint32_t crc32cPortable(uint32_t crc, const void* data, size_t byteLength) noexcept;
// Returns 0 and does nothing useful when the CPU lacks SSE4.2; check crc32cHardwareAvailable().
uint32_t crc32cHardware(uint32_t crc, const void* data, size_t byteLength) noexcept;
bool crc32cHardwareAvailable() noexcept;

}  // namespace bm
