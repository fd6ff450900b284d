// CRC32C: known vectors, chaining, and the hardware path against the portable one on random
// lengths, offsets and alignments.
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstring>
#include <string>
#include <vector>

#include "check.hpp"
#include "crc32c.hpp"
#include "errors.hpp"

TEST(crc32c_known_vector_123456789) {
  const char* text = "123456789";
  CHECK_EQ(bm::crc32c(0, text, 9), 0xE3069283u);
  CHECK_EQ(bm::crc32cPortable(0, text, 9), 0xE3069283u);
  if (bm::crc32cHardwareAvailable()) CHECK_EQ(bm::crc32cHardware(0, text, 9), 0xE3069283u);
}

TEST(crc32c_known_vectors_from_rfc3720) {
  // iSCSI (RFC 3720, B.4): 32 bytes of zeros, of 0xFF, ascending and descending.
  std::vector<uint8_t> bytes(32, 0);
  CHECK_EQ(bm::crc32c(0, bytes.data(), bytes.size()), 0x8A9136AAu);
  std::fill(bytes.begin(), bytes.end(), 0xFF);
  CHECK_EQ(bm::crc32c(0, bytes.data(), bytes.size()), 0x62A8AB43u);
  for (int i = 0; i < 32; i++) bytes[i] = static_cast<uint8_t>(i);
  CHECK_EQ(bm::crc32c(0, bytes.data(), bytes.size()), 0x46DD794Eu);
  for (int i = 0; i < 32; i++) bytes[i] = static_cast<uint8_t>(31 - i);
  CHECK_EQ(bm::crc32c(0, bytes.data(), bytes.size()), 0x113FDB5Cu);
}

TEST(crc32c_empty_input_leaves_crc_unchanged) {
  CHECK_EQ(bm::crc32c(0, nullptr, 0), 0u);
  CHECK_EQ(bm::crc32c(0x12345678u, "", 0), 0x12345678u);
  CHECK_EQ(bm::crc32cPortable(0x12345678u, nullptr, 0), 0x12345678u);
}

TEST(crc32c_chains_across_splits) {
  auto random = bmtest::seededRandom("chain");
  std::vector<uint8_t> bytes(4096);
  for (auto& byte : bytes) byte = static_cast<uint8_t>(random());
  const uint32_t whole = bm::crc32c(0, bytes.data(), bytes.size());
  for (int round = 0; round < 200; round++) {
    const size_t split = random() % (bytes.size() + 1);
    const uint32_t first = bm::crc32c(0, bytes.data(), split);
    CHECK_EQ(bm::crc32c(first, bytes.data() + split, bytes.size() - split), whole);
    const uint32_t firstPortable = bm::crc32cPortable(0, bytes.data(), split);
    CHECK_EQ(bm::crc32cPortable(firstPortable, bytes.data() + split, bytes.size() - split), whole);
  }
}

TEST(crc32c_hardware_matches_portable_on_random_input) {
  if (!bm::crc32cHardwareAvailable()) {
    std::printf("    (this CPU has no SSE4.2: only the portable path is checked)\n");
    CHECK_EQ(bm::crc32cHardware(0, "123456789", 9), 0u);
    return;
  }
  auto random = bmtest::seededRandom("hardware");
  std::vector<uint8_t> buffer(70000);
  for (auto& byte : buffer) byte = static_cast<uint8_t>(random());
  for (int round = 0; round < 2000; round++) {
    // Offsets 0..15 cover every alignment of the 8-byte loop; lengths cover the tails.
    const size_t offset = random() % 16;
    const size_t byteLength = round < 100 ? static_cast<size_t>(round) : random() % (buffer.size() - 16);
    const uint32_t seed = (round % 3 == 0) ? 0 : static_cast<uint32_t>(random());
    const uint32_t hardware = bm::crc32cHardware(seed, buffer.data() + offset, byteLength);
    const uint32_t portable = bm::crc32cPortable(seed, buffer.data() + offset, byteLength);
    if (hardware != portable) {
      CHECK_EQ(hardware, portable);
      std::fprintf(stderr, "    offset %zu length %zu seed %u\n", offset, byteLength, seed);
      break;
    }
    CHECK_EQ(bm::crc32c(seed, buffer.data() + offset, byteLength), portable);
  }
}

TEST(error_code_names_are_listed_in_order) {
  const char* const* names = bm::codeNames();
  int count = 0;
  while (names[count] != nullptr) count++;
  CHECK_EQ(count, 47);  // one per line of BM_ERROR_CODES; the TS list (src/errors.ts) is checked equal
  CHECK_EQ(std::string(names[0]), std::string("ERR_REGION_CLOSED"));
  CHECK_EQ(std::string(bm::codeName(bm::Code::ERR_JOURNAL_RELEASED)), std::string("ERR_JOURNAL_RELEASED"));
  for (int i = 0; i < count; i++) {
    CHECK_EQ(std::string(bm::codeName(static_cast<bm::Code>(i))), std::string(names[i]));
  }
  const bm::Error error(bm::Code::ERR_REGION_TRIM, "trim failed", 5);
  CHECK(error.code() == bm::Code::ERR_REGION_TRIM);
  CHECK_EQ(error.errnoValue(), 5);
  CHECK_EQ(std::string(error.what()), std::string("trim failed"));
}

TEST(broken_invariant_aborts_the_process) {
  std::fflush(nullptr);
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    // Keep the expected report out of the test log.
    std::freopen("/dev/null", "w", stderr);
    const int answer = 41;
    BM_ASSERT(answer == 42);
    _exit(0);
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  CHECK(WIFSIGNALED(status));
  CHECK_EQ(WTERMSIG(status), SIGABRT);
}

BM_TEST_MAIN()
