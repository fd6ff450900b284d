// crc32c(data, previous) for JavaScript, plus the two implementations separately so a test can
// cross-check the hardware path against the portable one.
#include <napi.h>

#include "addon.hpp"
#include "crc32c.hpp"

namespace bmjs {
namespace {

uint32_t argPrevious(const Napi::CallbackInfo& info) {
  if (info[1].IsUndefined()) return 0;
  return static_cast<uint32_t>(argIndexAtMost(info.Env(), arg(info, 1), "previous", UINT32_MAX));
}

Napi::Value crc32c(const Napi::CallbackInfo& info) {
  const Bytes data = argBytes(info.Env(), arg(info, 0), "data");
  const uint32_t previous = argPrevious(info);
  return Napi::Number::New(info.Env(), bm::crc32c(previous, data.data, data.byteLength));
}

Napi::Value crc32cPortable(const Napi::CallbackInfo& info) {
  const Bytes data = argBytes(info.Env(), arg(info, 0), "data");
  const uint32_t previous = argPrevious(info);
  return Napi::Number::New(info.Env(), bm::crc32cPortable(previous, data.data, data.byteLength));
}

// -1 when the CPU has no CRC32C instruction.
Napi::Value crc32cHardware(const Napi::CallbackInfo& info) {
  const Bytes data = argBytes(info.Env(), arg(info, 0), "data");
  const uint32_t previous = argPrevious(info);
  if (!bm::crc32cHardwareAvailable()) return Napi::Number::New(info.Env(), -1);
  return Napi::Number::New(info.Env(), bm::crc32cHardware(previous, data.data, data.byteLength));
}

}  // namespace

void initCrc32c(Napi::Env env, Napi::Object exports) {
  exports.Set("crc32c", Napi::Function::New<crc32c>(env, "crc32c"));
  exports.Set("crc32cPortable", Napi::Function::New<crc32cPortable>(env, "crc32cPortable"));
  exports.Set("crc32cHardware", Napi::Function::New<crc32cHardware>(env, "crc32cHardware"));
}

}  // namespace bmjs
