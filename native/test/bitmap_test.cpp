// Bitmap: random operations against a naive std::set model, range edges, serialization and
// hostile input, geometry errors, storage in a region, concurrent setters.
#include <algorithm>
#include <cstring>
#include <memory>
#include <set>
#include <thread>
#include <vector>

#include "bitmap.hpp"
#include "crc32c.hpp"
#include "check.hpp"
#include "test_support.hpp"

using bm::Bitmap;

namespace {

// Compares every bit and the derived queries with the model.
void checkAgainstModel(const Bitmap& bitmap, const std::set<uint64_t>& model) {
  CHECK_EQ(bitmap.count(), static_cast<uint64_t>(model.size()));
  uint64_t mismatches = 0;
  for (uint64_t i = 0; i < bitmap.bitCount(); i++) {
    if (bitmap.test(i) != (model.count(i) == 1)) mismatches++;
  }
  CHECK_EQ(mismatches, 0u);
  // Walking with findNextSet visits exactly the model.
  std::vector<uint64_t> found;
  for (uint64_t i = bitmap.findNextSet(0); i != Bitmap::kNone; i = bitmap.findNextSet(i + 1)) {
    found.push_back(i);
    if (found.size() > bitmap.bitCount()) break;
  }
  CHECK(found == std::vector<uint64_t>(model.begin(), model.end()));
}

uint64_t modelNextSet(const std::set<uint64_t>& model, uint64_t from) {
  const auto it = model.lower_bound(from);
  return it == model.end() ? Bitmap::kNone : *it;
}

uint64_t modelNextClear(const std::set<uint64_t>& model, uint64_t from, uint64_t bitCount) {
  for (uint64_t i = from; i < bitCount; i++) {
    if (model.count(i) == 0) return i;
  }
  return Bitmap::kNone;
}

}  // namespace

// The same random walk for owned storage and for storage inside a region (whose scans skip
// holes, and whose clearAll punches them).
static void runModel(const char* salt, bool inRegion) {
  auto random = bmtest::seededRandom(salt);
  const uint64_t bitCounts[] = {1, 2, 63, 64, 65, 127, 128, 129, 1000, 4096 + 7, 70000};
  for (const uint64_t bitCount : bitCounts) {
    const uint64_t granularityBytes = uint64_t{512} << (random() % 8);
    std::unique_ptr<Bitmap> storage;
    if (inRegion) {
      // Starts mid-page, spans several pages: runs of words begin and end inside the storage.
      const uint64_t byteOffset = 3 * 4096 + 8 * (random() % 512);
      auto region = bmtest::anonymousRegion(byteOffset + Bitmap::storageBytes(bitCount) + 4096);
      storage = std::make_unique<Bitmap>(region, byteOffset, bitCount, granularityBytes);
    } else {
      storage = std::make_unique<Bitmap>(bitCount, granularityBytes);
    }
    Bitmap& bitmap = *storage;
    std::set<uint64_t> model;
    for (int step = 0; step < 3000; step++) {
      const uint64_t index = random() % bitCount;
      const uint64_t count = random() % (bitCount - index + 1);
      switch (random() % 10) {
        case 0:
        case 1: {
          const bool was = bitmap.set(index);
          CHECK_EQ(was, model.count(index) == 1);
          model.insert(index);
          break;
        }
        case 2: {
          const bool was = bitmap.clear(index);
          CHECK_EQ(was, model.count(index) == 1);
          model.erase(index);
          break;
        }
        case 3:
          bitmap.setRange(index, count);
          for (uint64_t i = index; i < index + count; i++) model.insert(i);
          break;
        case 4:
          bitmap.clearRange(index, count);
          for (uint64_t i = index; i < index + count; i++) model.erase(i);
          break;
        case 5: {
          // markBytes on byte ranges, including ones running past the covered range.
          const uint64_t byteOffset = random() % (bitCount * granularityBytes + granularityBytes);
          const uint64_t byteLength = random() % (4 * granularityBytes + 1);
          bitmap.markBytes(byteOffset, byteLength);
          if (byteLength > 0) {
            const uint64_t first = byteOffset / granularityBytes;
            const uint64_t last = (byteOffset + byteLength - 1) / granularityBytes;
            for (uint64_t i = first; i <= last && i < bitCount; i++) model.insert(i);
          }
          break;
        }
        case 6:
          CHECK_EQ(bitmap.findNextSet(index), modelNextSet(model, index));
          CHECK_EQ(bitmap.findNextClear(index), modelNextClear(model, index, bitCount));
          break;
        case 7:
          CHECK_EQ(bitmap.test(index), model.count(index) == 1);
          break;
        case 8:
          if (random() % 20 == 0) {
            bitmap.clearAll();
            model.clear();
          }
          break;
        default:
          if (random() % 50 == 0) {
            bitmap.setAll();
            for (uint64_t i = 0; i < bitCount; i++) model.insert(i);
          }
          break;
      }
      if (step % 500 == 0) checkAgainstModel(bitmap, model);
    }
    checkAgainstModel(bitmap, model);
  }
}

TEST(bitmap_random_operations_match_a_naive_model) { runModel("model", false); }

TEST(bitmap_in_a_region_random_operations_match_a_naive_model) { runModel("model-region", true); }

TEST(bitmap_range_operations_at_word_edges) {
  struct Case {
    uint64_t first, count;
  };
  const Case cases[] = {{0, 0},  {0, 1},   {63, 1},  {63, 2},  {0, 64},   {64, 64},
                        {1, 126}, {60, 8}, {127, 2}, {0, 192}, {65, 126}, {191, 1}};
  for (const Case& range : cases) {
    Bitmap bitmap(192, 4096);
    bitmap.setRange(range.first, range.count);
    CHECK_EQ(bitmap.count(), range.count);
    for (uint64_t i = 0; i < 192; i++) {
      const bool inside = i >= range.first && i < range.first + range.count;
      if (bitmap.test(i) != inside) {
        CHECK_EQ(bitmap.test(i), inside);
        break;
      }
    }
    bitmap.setAll();
    bitmap.clearRange(range.first, range.count);
    CHECK_EQ(bitmap.count(), 192 - range.count);
    CHECK_EQ(bitmap.findNextClear(0), range.count == 0 ? Bitmap::kNone : range.first);
  }
  Bitmap bitmap(130, 4096);
  CHECK_THROWS_AS(bitmap.setRange(100, 31), bm::RangeError);
  CHECK_THROWS_AS(bitmap.clearRange(131, 0), bm::RangeError);
  CHECK_THROWS_AS(bitmap.setRange(1, UINT64_MAX), bm::RangeError);
  CHECK_THROWS_AS(bitmap.set(130), bm::RangeError);
  CHECK_THROWS_AS(bitmap.test(UINT64_MAX), bm::RangeError);
  bitmap.setRange(130, 0);
  // setAll never sets the bits past bitCount in the last word.
  bitmap.setAll();
  CHECK_EQ(bitmap.count(), 130u);
  CHECK_EQ(bitmap.words()[2], (uint64_t{1} << 2) - 1);
  CHECK_EQ(bitmap.findNextClear(0), Bitmap::kNone);
  CHECK_EQ(bitmap.findNextSet(130), Bitmap::kNone);
}

TEST(bitmap_mark_bytes_covers_every_touched_track) {
  Bitmap bitmap(16, 65536);
  bitmap.markBytes(65535, 2);  // touches tracks 0 and 1
  CHECK(bitmap.test(0));
  CHECK(bitmap.test(1));
  CHECK_EQ(bitmap.count(), 2u);
  bitmap.markBytes(5 * 65536, 0);  // empty: nothing
  CHECK_EQ(bitmap.count(), 2u);
  bitmap.markBytes(15 * 65536 + 10, UINT64_MAX);  // clamped, no wrap to track 0
  CHECK(bitmap.test(15));
  CHECK_EQ(bitmap.count(), 3u);
  bitmap.markBytes(UINT64_MAX - 5, 100);  // entirely past the end
  CHECK_EQ(bitmap.count(), 3u);
}

// The write path's test-first marking must set exactly what markBytes sets, from any starting
// contents (it only skips writes to words that already hold every bit).
TEST(bitmap_mark_bytes_after_fence_matches_mark_bytes) {
  auto random = bmtest::seededRandom("mark-after-fence");
  for (int round = 0; round < 200; round++) {
    const uint64_t bitCount = 1 + random() % 700;
    Bitmap plain(bitCount, 4096);
    Bitmap testFirst(bitCount, 4096);
    for (int k = 0; k < 20; k++) {
      const uint64_t index = random() % bitCount;
      plain.set(index);
      testFirst.set(index);
    }
    if (random() % 3 == 0) {
      plain.setAll();
      testFirst.setAll();
    }
    for (int k = 0; k < 30; k++) {
      const uint64_t byteOffset = random() % (bitCount * 4096 + 8192);
      const uint64_t byteLength = random() % (200 * 4096 + 1);
      plain.markBytes(byteOffset, byteLength);
      testFirst.markBytesAfterFence(byteOffset, byteLength);
    }
    CHECK_EQ(plain.count(), testFirst.count());
    for (uint64_t w = 0; w < plain.wordCount(); w++) CHECK_EQ(plain.words()[w], testFirst.words()[w]);
  }
}

TEST(bitmap_geometry_is_validated) {
  CHECK_THROWS_AS(Bitmap(10, 256), bm::RangeError);
  CHECK_THROWS_AS(Bitmap(10, 3000), bm::RangeError);
  CHECK_THROWS_AS(Bitmap(10, uint64_t{1} << 31), bm::RangeError);
  CHECK_THROWS_AS(Bitmap(uint64_t{1} << 41, 65536), bm::RangeError);
  CHECK_EQ(Bitmap::storageBytes(0), 8u);
  CHECK_EQ(Bitmap::storageBytes(64), 8u);
  CHECK_EQ(Bitmap::storageBytes(65), 16u);
  CHECK_EQ(Bitmap::bitCountFor(0, 4096), 0u);
  CHECK_EQ(Bitmap::bitCountFor(4096, 4096), 1u);
  CHECK_EQ(Bitmap::bitCountFor(4097, 4096), 2u);
  Bitmap empty(0, 4096);
  CHECK_EQ(empty.count(), 0u);
  CHECK_EQ(empty.findNextSet(0), Bitmap::kNone);
  CHECK_EQ(empty.findNextClear(0), Bitmap::kNone);
  empty.setAll();
  empty.markBytes(0, 100);
  CHECK_EQ(empty.count(), 0u);
}

TEST(bitmap_a_huge_owned_bitmap_is_sparse) {
  // 2^36 bits = 8 GiB of words, which only a sparse mapping can hold; one bit at each end and
  // a short scan (a full one reads 8 GiB of zero page).
  const uint64_t bitCount = uint64_t{1} << 36;
  Bitmap bitmap(bitCount, 4096);
  bitmap.set(0);
  bitmap.set(bitCount - 1);
  bitmap.setRange(bitCount - 200, 10);
  CHECK(bitmap.test(0));
  CHECK_EQ(bitmap.findNextSet(bitCount - 1000), bitCount - 200);
  CHECK_EQ(bitmap.findNextSet(bitCount - 190), bitCount - 1);
  CHECK_EQ(bitmap.findNextClear(0), 1u);
}

TEST(bitmap_merge_swap_copy_and_their_geometry_errors) {
  Bitmap a(200, 4096);
  Bitmap b(200, 4096);
  a.setRange(0, 10);
  b.setRange(5, 10);
  b.set(199);
  a.orMerge(b);
  CHECK_EQ(a.count(), 16u);
  CHECK(a.test(199));
  Bitmap c(200, 4096);
  c.set(100);
  a.swap(c);
  CHECK_EQ(a.count(), 1u);
  CHECK(a.test(100));
  CHECK_EQ(c.count(), 16u);
  a.swap(a);
  CHECK_EQ(a.count(), 1u);
  a.copyFrom(b);
  CHECK_EQ(a.count(), b.count());
  CHECK_EQ(a.findNextSet(0), 5u);

  Bitmap otherCount(201, 4096);
  Bitmap otherGranularity(200, 8192);
  CHECK_THROWS_CODE(a.orMerge(otherCount), ERR_BITMAP_GEOMETRY);
  CHECK_THROWS_CODE(a.orMerge(otherGranularity), ERR_BITMAP_GEOMETRY);
  CHECK_THROWS_CODE(a.swap(otherCount), ERR_BITMAP_GEOMETRY);
  CHECK_THROWS_CODE(a.swap(otherGranularity), ERR_BITMAP_GEOMETRY);
  CHECK_THROWS_CODE(a.copyFrom(otherCount), ERR_BITMAP_GEOMETRY);
  CHECK_EQ(a.count(), b.count());  // unchanged by the refused operations
}

TEST(bitmap_serialize_round_trip) {
  auto random = bmtest::seededRandom("serialize");
  const uint64_t bitCounts[] = {0, 1, 64, 65, 1000};
  for (const uint64_t bitCount : bitCounts) {
    Bitmap bitmap(bitCount, 65536);
    for (uint64_t i = 0; i < bitCount; i++) {
      if (random() % 3 == 0) bitmap.set(i);
    }
    const std::vector<uint8_t> bytes = bitmap.serialize();
    CHECK_EQ(static_cast<uint64_t>(bytes.size()), bitmap.serializedBytes());
    CHECK(std::memcmp(bytes.data(), "BMBITMAP", 8) == 0);
    auto copy = Bitmap::deserialize(bytes.data(), bytes.size());
    REQUIRE(copy != nullptr);
    CHECK_EQ(copy->bitCount(), bitCount);
    CHECK_EQ(copy->granularityBytes(), 65536u);
    CHECK_EQ(copy->count(), bitmap.count());
    CHECK(std::memcmp(copy->words(), bitmap.words(), bitmap.wordCount() * 8) == 0);
    Bitmap into(bitCount, 65536);
    into.setAll();
    into.deserializeInto(bytes.data(), bytes.size());
    CHECK(std::memcmp(into.words(), bitmap.words(), bitmap.wordCount() * 8) == 0);
    Bitmap wrong(bitCount + 1, 65536);
    CHECK_THROWS_CODE(wrong.deserializeInto(bytes.data(), bytes.size()), ERR_BITMAP_GEOMETRY);
  }
}

// Every call gets its own exact-size heap copy, so the sanitizer sees any read past the end.
static void expectRejected(const std::vector<uint8_t>& input, const char* what) {
  std::unique_ptr<uint8_t[]> exact(new uint8_t[input.size() + 1]);
  if (!input.empty()) std::memcpy(exact.get(), input.data(), input.size());
  try {
    Bitmap::deserialize(input.empty() ? nullptr : exact.get(), input.size());
    bmtest::reportFailure(__FILE__, __LINE__, std::string(what) + ": accepted");
  } catch (const bm::Error& error) {
    if (error.code() != bm::Code::ERR_BITMAP_FORMAT && error.code() != bm::Code::ERR_BITMAP_CHECKSUM) {
      bmtest::reportFailure(__FILE__, __LINE__,
                            std::string(what) + ": wrong code " + bm::codeName(error.code()));
    }
  }
}

TEST(bitmap_deserialize_rejects_hostile_input_with_a_code) {
  auto random = bmtest::seededRandom("hostile");
  Bitmap bitmap(300, 4096);
  for (uint64_t i = 0; i < 300; i += 7) bitmap.set(i);
  const std::vector<uint8_t> good = bitmap.serialize();
  // Truncated at every length.
  for (size_t length = 0; length < good.size(); length++) {
    expectRejected(std::vector<uint8_t>(good.begin(), good.begin() + length), "truncated");
  }
  // Extended.
  std::vector<uint8_t> longer = good;
  longer.push_back(0);
  expectRejected(longer, "extended");
  // Every single bit flipped.
  for (size_t bit = 0; bit < good.size() * 8; bit++) {
    std::vector<uint8_t> flipped = good;
    flipped[bit / 8] ^= static_cast<uint8_t>(1u << (bit % 8));
    expectRejected(flipped, "bit flip");
  }
  // Garbage of random lengths, some with a valid magic and version in front.
  for (int round = 0; round < 2000; round++) {
    std::vector<uint8_t> garbage(random() % 200);
    for (auto& byte : garbage) byte = static_cast<uint8_t>(random());
    if (round % 2 == 0 && garbage.size() >= 12) std::memcpy(garbage.data(), good.data(), 12);
    expectRejected(garbage, "garbage");
  }
  // A header claiming a huge wordCount must not be trusted for sizes.
  std::vector<uint8_t> huge = good;
  for (int i = 0; i < 8; i++) huge[32 + i] = 0xFF;
  expectRejected(huge, "huge wordCount");
}

TEST(bitmap_deserialize_rejects_well_formed_but_invalid_fields) {
  // Re-sealed with a correct checksum, so only the field checks can refuse them.
  Bitmap bitmap(100, 4096);
  std::vector<uint8_t> good = bitmap.serialize();
  auto reseal = [](std::vector<uint8_t> bytes) {
    const size_t crcOffset = bytes.size() - 4;
    const uint32_t crc = bm::crc32c(0, bytes.data(), crcOffset);
    std::memcpy(bytes.data() + crcOffset, &crc, 4);
    return bytes;
  };
  std::vector<uint8_t> badGranularity = good;
  badGranularity[16] = 0x01;  // 4097
  CHECK_THROWS_CODE(Bitmap::deserialize(reseal(badGranularity).data(), good.size()), ERR_BITMAP_FORMAT);
  std::vector<uint8_t> tailBits = good;
  tailBits[40 + 15] = 0x80;  // bit 127 of 100
  auto sealed = reseal(tailBits);
  CHECK_THROWS_CODE(Bitmap::deserialize(sealed.data(), sealed.size()), ERR_BITMAP_FORMAT);
  std::vector<uint8_t> badCount = good;
  badCount[24] = 200;  // 200 bits need 4 words, 2 are present
  sealed = reseal(badCount);
  CHECK_THROWS_CODE(Bitmap::deserialize(sealed.data(), sealed.size()), ERR_BITMAP_FORMAT);
}

TEST(bitmap_in_a_region_keeps_its_bits) {
  auto region = bmtest::anonymousRegion(1 << 20);
  {
    Bitmap bitmap(region, 4096, 1000, 65536);
    bitmap.setRange(10, 20);
  }
  Bitmap reopened(region, 4096, 1000, 65536);
  CHECK_EQ(reopened.count(), 20u);
  CHECK(reopened.test(29));
  // Stray bits past bitCount in the region are cleared on open (the tail invariant).
  uint64_t* words = reinterpret_cast<uint64_t*>(region->data() + 8192);
  words[1] = ~uint64_t{0};
  Bitmap tail(region, 8192, 70, 65536);
  CHECK_EQ(tail.count(), 6u);
  CHECK_THROWS_AS(Bitmap(region, 4100, 10, 65536), bm::RangeError);
  CHECK_THROWS_AS(Bitmap(region, (1 << 20) - 8, 65, 65536), bm::RangeError);
  CHECK_THROWS_AS(Bitmap(nullptr, 0, 10, 65536), bm::ArgumentError);
}

TEST(bitmap_close_is_idempotent_and_later_use_throws) {
  Bitmap bitmap(100, 4096);
  bitmap.close();
  bitmap.close();
  CHECK(bitmap.closed());
  CHECK_THROWS_CODE(bitmap.set(1), ERR_BITMAP_CLOSED);
  CHECK_THROWS_CODE(bitmap.count(), ERR_BITMAP_CLOSED);
  CHECK_THROWS_CODE(bitmap.words(), ERR_BITMAP_CLOSED);
  CHECK_THROWS_CODE(bitmap.serialize(), ERR_BITMAP_CLOSED);
  bitmap.markBytes(0, 4096);  // noexcept: a no-op once closed
}

TEST(bitmap_concurrent_setters_lose_no_bits) {
  // Four threads set interleaved bits of the same words: a plain read-modify-write would lose
  // some of them.
  const uint64_t bitCount = 1 << 16;
  Bitmap bitmap(bitCount, 4096);
  std::vector<std::thread> threads;
  for (uint64_t t = 0; t < 4; t++) {
    threads.emplace_back([&bitmap, t, bitCount] {
      for (uint64_t i = t; i < bitCount; i += 4) bitmap.set(i);
    });
  }
  for (auto& thread : threads) thread.join();
  CHECK_EQ(bitmap.count(), bitCount);
}

BM_TEST_MAIN()
