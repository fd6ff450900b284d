// A tiny test harness for the native core tests: no external library, so the tests build
// anywhere the core builds.
//
//   TEST(region_anonymous_reads_back_writes) { ...; CHECK(x == y); REQUIRE(p != nullptr); }
//
// CHECK records a failure and goes on; REQUIRE ends the current test. CHECK_EQ prints both
// values. CHECK_THROWS_CODE expects a bm::Error with the given code; CHECK_THROWS_AS a given
// exception type. Each binary runs every registered test (or those whose name contains argv[1]),
// prints one line per test and a summary line "<binary>: N passed, M failed", and exits non-zero
// when anything failed. Random tests take their seed from testSeed(): BM_SEED from the
// environment when set (to replay a failure), else a fresh one; it is printed either way.
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <functional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "errors.hpp"

namespace bmtest {

struct TestCase {
  const char* name;
  void (*body)();
};

inline std::vector<TestCase>& registry() {
  static std::vector<TestCase> tests;
  return tests;
}

struct Registrar {
  Registrar(const char* name, void (*body)()) { registry().push_back({name, body}); }
};

// Thrown by REQUIRE to end the current test.
struct RequireFailed {};

inline int& failureCount() {
  static int failures = 0;
  return failures;
}

inline void reportFailure(const char* file, int line, const std::string& what) {
  failureCount()++;
  std::fprintf(stderr, "    FAILED %s:%d: %s\n", file, line, what.c_str());
}

template <typename T>
std::string show(const T& value) {
  std::ostringstream out;
  if constexpr (std::is_same_v<T, bool>) {
    out << (value ? "true" : "false");
  } else if constexpr (std::is_integral_v<T> && sizeof(T) == 1) {
    out << static_cast<int>(value);
  } else {
    out << value;
  }
  return out.str();
}

inline uint64_t testSeed() {
  static const uint64_t seed = [] {
    if (const char* fromEnvironment = std::getenv("BM_SEED")) {
      return static_cast<uint64_t>(std::strtoull(fromEnvironment, nullptr, 0));
    }
    std::random_device device;
    return (uint64_t{device()} << 32) ^ device();
  }();
  return seed;
}

// A test-local generator seeded from testSeed() and a per-test salt, so tests do not depend
// on the order they run in.
inline std::mt19937_64 seededRandom(const char* salt) {
  uint64_t mixed = testSeed();
  for (const char* c = salt; *c; c++) mixed = (mixed ^ static_cast<uint8_t>(*c)) * 0x100000001B3ull;
  return std::mt19937_64(mixed);
}

inline int runAll(int argc, char** argv) {
  const char* filter = argc > 1 ? argv[1] : nullptr;
  const char* binary = std::strrchr(argv[0], '/') ? std::strrchr(argv[0], '/') + 1 : argv[0];
  std::printf("%s: seed %llu (replay with BM_SEED=%llu)\n", binary,
              static_cast<unsigned long long>(testSeed()),
              static_cast<unsigned long long>(testSeed()));
  int passed = 0;
  int failed = 0;
  for (const TestCase& test : registry()) {
    if (filter != nullptr && std::strstr(test.name, filter) == nullptr) continue;
    const int failuresBefore = failureCount();
    const auto start = std::chrono::steady_clock::now();
    std::fflush(stdout);
    try {
      test.body();
    } catch (const RequireFailed&) {
      // Already reported.
    } catch (const bm::Error& error) {
      reportFailure(__FILE__, __LINE__,
                    std::string("uncaught bm::Error ") + bm::codeName(error.code()) + ": " +
                        error.what());
    } catch (const std::exception& error) {
      reportFailure(__FILE__, __LINE__, std::string("uncaught exception: ") + error.what());
    }
    const auto elapsedMs = std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - start)
                               .count();
    const bool ok = failureCount() == failuresBefore;
    std::printf("  %s %s (%lld ms)\n", ok ? "ok  " : "FAIL", test.name,
                static_cast<long long>(elapsedMs));
    std::fflush(stdout);
    (ok ? passed : failed)++;
  }
  std::printf("%s: %d passed, %d failed\n", binary, passed, failed);
  if (failed > 0) {
    std::printf("%s: replay with BM_SEED=%llu\n", binary,
                static_cast<unsigned long long>(testSeed()));
  }
  return failed == 0 ? 0 : 1;
}

}  // namespace bmtest

#define BM_TEST_CONCAT_INNER(a, b) a##b
#define BM_TEST_CONCAT(a, b) BM_TEST_CONCAT_INNER(a, b)

#define TEST(name)                                                               \
  static void name();                                                            \
  static const ::bmtest::Registrar BM_TEST_CONCAT(registrar_, name)(#name, name); \
  static void name()

#define CHECK(expression)                                                         \
  do {                                                                            \
    if (!(expression)) ::bmtest::reportFailure(__FILE__, __LINE__, #expression);  \
  } while (0)

#define REQUIRE(expression)                                                      \
  do {                                                                           \
    if (!(expression)) {                                                         \
      ::bmtest::reportFailure(__FILE__, __LINE__, "required: " #expression);     \
      throw ::bmtest::RequireFailed{};                                           \
    }                                                                            \
  } while (0)

#define CHECK_EQ(actual, expected)                                                         \
  do {                                                                                     \
    const auto& bmActual = (actual);                                                       \
    const auto& bmExpected = (expected);                                                   \
    if (!(bmActual == bmExpected)) {                                                       \
      ::bmtest::reportFailure(__FILE__, __LINE__,                                          \
                              std::string(#actual " == " #expected ": ") +                 \
                                  ::bmtest::show(bmActual) + " != " +                      \
                                  ::bmtest::show(bmExpected));                             \
    }                                                                                      \
  } while (0)

#define REQUIRE_EQ(actual, expected)                                                       \
  do {                                                                                     \
    const int bmFailuresBefore = ::bmtest::failureCount();                                 \
    CHECK_EQ(actual, expected);                                                            \
    if (::bmtest::failureCount() != bmFailuresBefore) throw ::bmtest::RequireFailed{};     \
  } while (0)

#define CHECK_THROWS_CODE(statement, expectedCode)                                          \
  do {                                                                                      \
    bool bmThrew = false;                                                                   \
    try {                                                                                   \
      statement;                                                                            \
    } catch (const ::bm::Error& bmError) {                                                  \
      bmThrew = true;                                                                       \
      if (bmError.code() != ::bm::Code::expectedCode) {                                     \
        ::bmtest::reportFailure(__FILE__, __LINE__,                                         \
                                std::string(#statement " threw ") +                         \
                                    ::bm::codeName(bmError.code()) + " (" + bmError.what() + \
                                    "), expected " #expectedCode);                          \
      }                                                                                     \
    } catch (const std::exception& bmOther) {                                               \
      bmThrew = true;                                                                       \
      ::bmtest::reportFailure(__FILE__, __LINE__,                                           \
                              std::string(#statement " threw a non-bm::Error: ") +          \
                                  bmOther.what());                                          \
    }                                                                                       \
    if (!bmThrew) {                                                                         \
      ::bmtest::reportFailure(__FILE__, __LINE__,                                           \
                              #statement " did not throw (expected " #expectedCode ")");    \
    }                                                                                       \
  } while (0)

#define CHECK_THROWS_AS(statement, ExceptionType)                                           \
  do {                                                                                      \
    bool bmThrew = false;                                                                   \
    try {                                                                                   \
      statement;                                                                            \
    } catch (const ExceptionType&) {                                                        \
      bmThrew = true;                                                                       \
    } catch (const std::exception& bmOther) {                                               \
      bmThrew = true;                                                                       \
      ::bmtest::reportFailure(__FILE__, __LINE__,                                           \
                              std::string(#statement " threw the wrong type: ") +           \
                                  bmOther.what());                                          \
    }                                                                                       \
    if (!bmThrew) {                                                                         \
      ::bmtest::reportFailure(__FILE__, __LINE__,                                           \
                              #statement " did not throw " #ExceptionType);                 \
    }                                                                                       \
  } while (0)

// Expects `statement` to throw ExceptionType whose message contains `fragment`.
#define CHECK_THROWS_MESSAGE(statement, ExceptionType, fragment)                            \
  do {                                                                                      \
    bool bmThrew = false;                                                                   \
    try {                                                                                   \
      statement;                                                                            \
    } catch (const ExceptionType& bmError) {                                                \
      bmThrew = true;                                                                       \
      if (std::string(bmError.what()).find(fragment) == std::string::npos) {                \
        ::bmtest::reportFailure(__FILE__, __LINE__,                                         \
                                std::string("message \"") + bmError.what() +                \
                                    "\" lacks \"" + (fragment) + "\"");                     \
      }                                                                                     \
    } catch (const std::exception& bmOther) {                                               \
      bmThrew = true;                                                                       \
      ::bmtest::reportFailure(__FILE__, __LINE__,                                           \
                              std::string(#statement " threw the wrong type: ") +           \
                                  bmOther.what());                                          \
    }                                                                                       \
    if (!bmThrew) {                                                                         \
      ::bmtest::reportFailure(__FILE__, __LINE__,                                           \
                              #statement " did not throw " #ExceptionType);                 \
    }                                                                                       \
  } while (0)

#define BM_TEST_MAIN() \
  int main(int argc, char** argv) { return ::bmtest::runAll(argc, argv); }
