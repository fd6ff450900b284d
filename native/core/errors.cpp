#include "errors.hpp"

namespace bm {

namespace {

const char* const kCodeNames[] = {
#define BM_NAME(name) #name,
    BM_ERROR_CODES(BM_NAME)
#undef BM_NAME
        nullptr,
};

constexpr size_t kCodeCount = sizeof kCodeNames / sizeof kCodeNames[0] - 1;

}  // namespace

const char* codeName(Code code) noexcept {
  const auto index = static_cast<size_t>(code);
  return index < kCodeCount ? kCodeNames[index] : "ERR_UNKNOWN";
}

const char* const* codeNames() noexcept { return kCodeNames; }

Error::Error(Code code, const std::string& message, int errnoValue)
    : std::runtime_error(message), code_(code), errno_(errnoValue) {}

void assertFailed(const char* expression, const char* file, int line) noexcept {
  // stderr is unbuffered; one fprintf keeps the line whole when several threads fail at once.
  std::fprintf(stderr, "blockmirror: assertion failed: %s (%s:%d)\n", expression, file, line);
  std::abort();
}

}  // namespace bm
