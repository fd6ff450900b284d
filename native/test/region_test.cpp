// Region: the three backings, sparseness, trim, allocation maps, errors.
#include <sys/stat.h>

#include <cstring>
#include <vector>

#include "check.hpp"
#include "region.hpp"
#include "test_support.hpp"

using bm::Region;
using bm::RegionKind;
using bm::RegionOptions;

namespace {

constexpr uint64_t kMiB = 1024 * 1024;

bool allZero(const uint8_t* bytes, uint64_t byteLength) {
  for (uint64_t i = 0; i < byteLength; i++) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

// The extents must tile [byteOffset, +byteLength) exactly, in order, merged.
void checkTiles(const std::vector<bm::RegionExtent>& extents, uint64_t byteOffset,
                uint64_t byteLength) {
  uint64_t position = byteOffset;
  for (size_t i = 0; i < extents.size(); i++) {
    CHECK_EQ(extents[i].byteOffset, position);
    CHECK(extents[i].byteLength > 0);
    if (i > 0) CHECK(extents[i].allocated != extents[i - 1].allocated);
    position += extents[i].byteLength;
  }
  CHECK_EQ(position, byteOffset + byteLength);
}

}  // namespace

TEST(region_anonymous_reads_back_writes) {
  auto region = bmtest::anonymousRegion(3 * 4096 + 1);
  CHECK_EQ(region->byteLength() % Region::pageSize(), 0u);
  CHECK(region->byteLength() >= 3 * 4096 + 1);
  CHECK(region->created());
  CHECK(region->kind() == RegionKind::Anonymous);
  const char text[] = "blockmirror";
  region->write(4090, text, sizeof text);  // straddles a page boundary
  char back[sizeof text] = {};
  region->read(4090, back, sizeof back);
  CHECK_EQ(std::string(back), std::string(text));
  CHECK(std::memcmp(region->data() + 4090, text, sizeof text) == 0);
}

TEST(region_bounds_are_checked_with_precise_messages) {
  auto region = bmtest::anonymousRegion(8192);
  uint8_t byte = 0;
  CHECK_THROWS_MESSAGE(region->read(8192, &byte, 1), bm::RangeError,
                       "read [8192, +1) is outside the region (8192 bytes)");
  CHECK_THROWS_AS(region->write(UINT64_MAX, &byte, 2), bm::RangeError);
  CHECK_THROWS_AS(region->trim(0, 8193), bm::RangeError);
  CHECK_THROWS_AS(region->allocationMap(4096, UINT64_MAX), bm::RangeError);
  region->read(8192, &byte, 0);  // an empty range at the end is fine
}

TEST(region_bad_options_are_caller_mistakes) {
  RegionOptions options;
  options.byteLength = 0;
  CHECK_THROWS_AS(Region::open(options), bm::RangeError);
  options.byteLength = uint64_t{1} << 60;
  CHECK_THROWS_AS(Region::open(options), bm::RangeError);
  options.kind = RegionKind::Shared;
  options.byteLength = 4096;
  options.name = "has/slash";
  CHECK_THROWS_AS(Region::open(options), bm::ArgumentError);
  options.name = "";
  CHECK_THROWS_AS(Region::open(options), bm::ArgumentError);
  options.name = "..";
  CHECK_THROWS_AS(Region::open(options), bm::ArgumentError);
  options.name = std::string(201, 'a');
  CHECK_THROWS_AS(Region::open(options), bm::ArgumentError);
  options.name = "fine";
  options.create = false;
  options.open = false;
  CHECK_THROWS_AS(Region::open(options), bm::ArgumentError);
}

TEST(region_close_is_idempotent_and_later_use_throws) {
  auto region = bmtest::anonymousRegion(4096);
  region->close();
  CHECK(region->closed());
  region->close();
  uint8_t byte = 0;
  CHECK_THROWS_CODE(region->data(), ERR_REGION_CLOSED);
  CHECK_THROWS_CODE(region->read(0, &byte, 1), ERR_REGION_CLOSED);
  CHECK_THROWS_CODE(region->trim(0, 1), ERR_REGION_CLOSED);
  CHECK_THROWS_CODE(region->allocatedBytes(), ERR_REGION_CLOSED);
}

TEST(region_shared_by_name_opened_twice_shows_the_same_bytes) {
  bmtest::SharedName name("region");
  auto first = bmtest::sharedRegion(name.str(), 64 * 1024, true, false);
  CHECK(first->created());
  auto second = bmtest::sharedRegion(name.str(), 0, false, true);
  CHECK(!second->created());
  CHECK_EQ(second->byteLength(), first->byteLength());
  const char text[] = "seen from both sides";
  first->write(1000, text, sizeof text);
  CHECK(std::memcmp(second->data() + 1000, text, sizeof text) == 0);
  second->write(60000, "x", 1);
  CHECK_EQ(first->data()[60000], 'x');
  // The bytes outlive both mappings until unlink.
  first->close();
  second->close();
  auto third = bmtest::sharedRegion(name.str(), 0, true, true);
  CHECK(!third->created());
  CHECK(std::memcmp(third->data() + 1000, text, sizeof text) == 0);
}

TEST(region_shared_create_and_open_errors) {
  bmtest::SharedName name("region-errors");
  CHECK_THROWS_CODE(bmtest::sharedRegion(name.str(), 4096, false, true), ERR_REGION_NOT_FOUND);
  auto region = bmtest::sharedRegion(name.str(), 4096, true, false);
  CHECK_THROWS_CODE(bmtest::sharedRegion(name.str(), 4096, true, false), ERR_REGION_EXISTS);
  CHECK_THROWS_CODE(bmtest::sharedRegion(name.str(), 8192, false, true), ERR_REGION_TOO_SMALL);
  CHECK(Region::unlink(RegionKind::Shared, name.str()));
  CHECK(!Region::unlink(RegionKind::Shared, name.str()));
}

TEST(region_file_backing_persists_and_flushes) {
  bmtest::TemporaryDirectory directory;
  REQUIRE(directory.valid());
  const std::string path = directory.file("volume.img");
  RegionOptions options;
  options.kind = RegionKind::File;
  options.name = path;
  options.byteLength = 100000;  // rounded up to whole pages
  {
    auto region = Region::open(options);
    CHECK(region->created());
    CHECK_EQ(region->byteLength() % Region::pageSize(), 0u);
    region->write(12345, "persist", 7);
    region->flush(12000, 1000);
    region->flushAll();
  }
  struct stat status {};
  REQUIRE(stat(path.c_str(), &status) == 0);
  CHECK_EQ(static_cast<uint64_t>(status.st_size) % Region::pageSize(), 0u);
  options.create = false;
  options.open = true;
  options.byteLength = 0;
  auto reopened = Region::open(options);
  CHECK(!reopened->created());
  CHECK_EQ(reopened->byteLength(), static_cast<uint64_t>(status.st_size));
  CHECK(std::memcmp(reopened->data() + 12345, "persist", 7) == 0);
  options.create = true;
  options.open = false;
  options.byteLength = 4096;
  CHECK_THROWS_CODE(Region::open(options), ERR_REGION_EXISTS);
  options.byteLength = 0;
  CHECK(Region::unlink(RegionKind::File, path));
  options.create = false;
  options.open = true;
  CHECK_THROWS_CODE(Region::open(options), ERR_REGION_NOT_FOUND);
}

TEST(region_one_tebibyte_is_sparse) {
  const uint64_t tebibyte = uint64_t{1} << 40;
  auto region = bmtest::anonymousRegion(tebibyte);
  CHECK_EQ(region->byteLength(), tebibyte);
  CHECK(region->allocatedBytes() < kMiB);
  const uint64_t offsets[] = {0, 4096 * 12345, tebibyte / 2 + 17, tebibyte - 8};
  for (const uint64_t byteOffset : offsets) region->write(byteOffset, "12345678", 8);
  // Four writes touch at most five pages (one straddles two).
  CHECK(region->allocatedBytes() <= 5 * Region::pageSize());
  const auto extents = region->allocationMap(0, tebibyte);
  checkTiles(extents, 0, tebibyte);
  uint64_t allocated = 0;
  for (const auto& extent : extents) allocated += extent.allocated ? extent.byteLength : 0;
  CHECK(allocated <= 5 * Region::pageSize());
  CHECK(allocated >= 4 * Region::pageSize());
  region->trim(0, tebibyte);
  CHECK_EQ(region->allocatedBytes(), 0u);
}

TEST(region_trim_returns_memory_and_reads_zero) {
  const uint64_t page = Region::pageSize();
  auto region = bmtest::anonymousRegion(64 * page);
  std::memset(region->data(), 0xAB, 64 * page);
  CHECK_EQ(region->allocatedBytes(), 64 * page);
  // Unaligned both ends: pages 3..9 are released, the edges of pages 2 and 10 are zeroed.
  const uint64_t byteOffset = 2 * page + 100;
  const uint64_t byteLength = 8 * page;
  region->trim(byteOffset, byteLength);
  // Measured before reading the range back: a read fault through the shared mapping allocates.
  CHECK_EQ(region->allocatedBytes(), 64 * page - 7 * page);
  std::vector<uint8_t> back(byteLength + 2);
  region->read(byteOffset - 1, back.data(), back.size());
  CHECK_EQ(back.front(), 0xAB);
  CHECK(allZero(back.data() + 1, byteLength));
  CHECK_EQ(back.back(), 0xAB);
  CHECK_EQ(region->allocatedBytes(), 64 * page - 7 * page);
  // A range inside one page only zeroes.
  region->trim(20 * page + 1, 10);
  region->read(20 * page, back.data(), 12);
  CHECK_EQ(back[0], 0xAB);
  CHECK(allZero(back.data() + 1, 10));
  CHECK_EQ(back[11], 0xAB);
  region->trim(0, 0);
  CHECK_EQ(region->allocatedBytes(), 64 * page - 7 * page);
}

TEST(region_reading_holes_allocates_nothing) {
  auto region = bmtest::anonymousRegion(64 * kMiB);
  std::vector<uint8_t> buffer(kMiB, 0xCD);
  for (uint64_t byteOffset = 0; byteOffset < 64 * kMiB; byteOffset += kMiB) {
    region->read(byteOffset, buffer.data(), kMiB);
  }
  CHECK(allZero(buffer.data(), kMiB));
  CHECK_EQ(region->allocatedBytes(), 0u);
  region->write(5 * kMiB + 3, "abc", 3);
  region->read(5 * kMiB, buffer.data(), 8);
  CHECK(std::memcmp(buffer.data() + 3, "abc", 3) == 0);
  CHECK_EQ(buffer[0], 0);
}

TEST(region_allocation_map_after_writes_and_trims) {
  const uint64_t page = Region::pageSize();
  auto region = bmtest::anonymousRegion(32 * page);
  auto extents = region->allocationMap(0, 32 * page);
  REQUIRE_EQ(extents.size(), 1u);
  CHECK(!extents[0].allocated);
  region->write(4 * page, "a", 1);
  region->write(5 * page + 7, "b", 1);
  region->write(20 * page, "c", 1);
  extents = region->allocationMap(0, 32 * page);
  checkTiles(extents, 0, 32 * page);
  REQUIRE_EQ(extents.size(), 5u);
  CHECK(!extents[0].allocated);
  CHECK_EQ(extents[1].byteOffset, 4 * page);
  CHECK_EQ(extents[1].byteLength, 2 * page);  // pages 4 and 5 merged
  CHECK(extents[1].allocated);
  CHECK_EQ(extents[3].byteOffset, 20 * page);
  CHECK(extents[3].allocated);
  // Clipped to the requested range, which need not be page-aligned.
  extents = region->allocationMap(4 * page + 100, page);
  REQUIRE_EQ(extents.size(), 1u);
  CHECK_EQ(extents[0].byteOffset, 4 * page + 100);
  CHECK_EQ(extents[0].byteLength, page);
  CHECK(extents[0].allocated);
  extents = region->allocationMap(19 * page + 1, 2 * page);
  checkTiles(extents, 19 * page + 1, 2 * page);
  REQUIRE_EQ(extents.size(), 3u);
  CHECK(!extents[0].allocated);
  CHECK(extents[1].allocated);
  CHECK_EQ(extents[1].byteOffset, 20 * page);
  CHECK_EQ(extents[2].byteLength, 1u);
  CHECK(region->allocationMap(3 * page, 0).empty());
  // Trimming page 4 leaves page 5 allocated.
  region->trim(4 * page, page);
  extents = region->allocationMap(0, 32 * page);
  checkTiles(extents, 0, 32 * page);
  REQUIRE(extents.size() >= 2);
  CHECK_EQ(extents[1].byteOffset, 5 * page);
  CHECK_EQ(extents[1].byteLength, page);
  region->trim(0, 32 * page);
  extents = region->allocationMap(0, 32 * page);
  REQUIRE_EQ(extents.size(), 1u);
  CHECK(!extents[0].allocated);
}

TEST(region_file_trim_punches_holes) {
  bmtest::TemporaryDirectory directory;
  REQUIRE(directory.valid());
  const uint64_t page = Region::pageSize();
  RegionOptions options;
  options.kind = RegionKind::File;
  options.name = directory.file("trim.img");
  options.byteLength = 16 * page;
  auto region = Region::open(options);
  std::memset(region->data(), 1, 16 * page);
  region->flushAll();
  region->trim(page, 14 * page);
  CHECK(allZero(region->data() + page, 14 * page));
  CHECK_EQ(region->data()[0], 1);
  CHECK_EQ(region->data()[15 * page], 1);
  const auto extents = region->allocationMap(0, 16 * page);
  checkTiles(extents, 0, 16 * page);
  // File systems that cannot punch holes still read zeros; where they can, the middle is a hole.
  if (extents.size() == 3) CHECK(!extents[1].allocated);
}

BM_TEST_MAIN()
