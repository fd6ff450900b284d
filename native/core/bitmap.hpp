// Notes on the design
// -------------------
// A Bitmap has one bit per track: track i covers bytes [i*granularity, (i+1)*granularity) of the
// volume it describes. Granularity is a power of two from 512 to 2^30 bytes (default 64 KiB).
//
// Storage is an array of 64-bit words, either owned (a private anonymous mapping made at
// construction: allocated at open, never on the write path; untouched pages cost nothing and
// read as the zero page) or placed inside another Region at a byte offset
// (so it is shared with other processes and can outlive this one). Bits beyond bitCount in the
// last word are always zero (invariant checked by count()).
//
// Thread safety: set/clear/test of single bits and of ranges use atomic read-modify-write on
// words (std::atomic_ref, relaxed order plus a release fence at the end of a batch), so writers on
// several threads or processes never lose each other's bits. Whole-bitmap operations
// (orMerge, swap, clearAll, serialize, deserializeInto) are atomic per word but not as a whole;
// callers that need a consistent cut hold their own gate (the write path's hold gate in TS).
//
// Serialized form (little endian): magic "BMBITMAP" u64, version u32 (1), reserved u32,
// granularityBytes u64, bitCount u64, wordCount u64, words[wordCount] u64, crc32c u32 over all
// preceding bytes. deserialize verifies magic, version, sizes and checksum (ERR_BITMAP_FORMAT,
// ERR_BITMAP_CHECKSUM) and never reads outside the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "region.hpp"

namespace bm {

class Bitmap {
 public:
  static constexpr uint64_t kNone = UINT64_MAX;  // findNextSet/findNextClear found nothing
  static constexpr uint64_t kMinGranularityBytes = 512;
  static constexpr uint64_t kMaxGranularityBytes = uint64_t{1} << 30;
  static constexpr uint64_t kDefaultGranularityBytes = 64 * 1024;

  // Bytes of word storage needed for bitCount bits (whole 64-bit words, at least one).
  static uint64_t storageBytes(uint64_t bitCount) noexcept;
  // Bits needed to cover coveredBytes at granularityBytes.
  static uint64_t bitCountFor(uint64_t coveredBytes, uint64_t granularityBytes) noexcept;

  // Owned storage, zeroed.
  Bitmap(uint64_t bitCount, uint64_t granularityBytes);
  // Storage inside `region` at `byteOffset` (8-aligned, storageBytes(bitCount) long). The
  // existing bits are kept (this is how a shared or surviving bitmap is reopened).
  Bitmap(std::shared_ptr<Region> region, uint64_t byteOffset, uint64_t bitCount,
         uint64_t granularityBytes);
  ~Bitmap();
  Bitmap(const Bitmap&) = delete;
  Bitmap& operator=(const Bitmap&) = delete;

  uint64_t bitCount() const noexcept { return bitCount_; }
  uint64_t granularityBytes() const noexcept { return granularityBytes_; }
  bool closed() const noexcept { return words_ == nullptr; }

  // Returns the previous value of the bit. RangeError when index >= bitCount.
  bool set(uint64_t index);
  bool clear(uint64_t index);
  bool test(uint64_t index) const;
  // [first, first+count); count may be 0. RangeError past the end.
  void setRange(uint64_t first, uint64_t count);
  void clearRange(uint64_t first, uint64_t count);
  // Sets every track that [byteOffset, byteOffset+byteLength) touches (byteLength 0: none).
  // Bytes past the covered range are clamped (the write path validated them already).
  void markBytes(uint64_t byteOffset, uint64_t byteLength) noexcept;
  // markBytes for the write path: words whose bits are all set already are only loaded, not
  // written, so the steady state (the tracks a workload keeps rewriting are dirty already) costs
  // no locked instruction. Correct only when the caller issued a sequentially consistent fence
  // between the data stores it marks for and this call (Volume::writeBatch does, once per
  // batch), and when consumers of the bitmap follow the clear-then-read protocol: clear a bit
  // (clear()/clearRange()/clearAll(), which are atomic per word and end with a full fence) before reading the
  // track's data to ship it. Then either the writer sees the bit clear and sets it again, or the consumer sees the
  // new data; no change is lost (the two fences make it a Dekker pair).
  void markBytesAfterFence(uint64_t byteOffset, uint64_t byteLength) noexcept;
  void clearAll();
  void setAll();
  uint64_t count() const;
  // First set (clear) bit with index >= from, or kNone.
  uint64_t findNextSet(uint64_t from) const;
  uint64_t findNextClear(uint64_t from) const;
  // this |= other. ERR_BITMAP_GEOMETRY unless bitCount and granularity are equal.
  void orMerge(const Bitmap& other);
  // Exchange the contents with other (same geometry, ERR_BITMAP_GEOMETRY otherwise).
  void swap(Bitmap& other);
  // Copy of the contents of other (same geometry).
  void copyFrom(const Bitmap& other);

  std::vector<uint8_t> serialize() const;
  // Size of the serialized form for this geometry.
  uint64_t serializedBytes() const noexcept;
  // Parses a serialized bitmap into a new owned Bitmap.
  static std::unique_ptr<Bitmap> deserialize(const uint8_t* bytes, size_t byteLength);
  // Loads a serialized bitmap into this one (same geometry required).
  void deserializeInto(const uint8_t* bytes, size_t byteLength);

  // Raw words, for the write path and for tests. Throws ERR_BITMAP_CLOSED after close().
  uint64_t* words() const;
  uint64_t wordCount() const noexcept { return wordCount_; }

  // Releases the storage reference; idempotent; later calls throw ERR_BITMAP_CLOSED.
  void close() noexcept;

 private:
  void checkOpen() const;
  // Calls visit(firstWord, endWord) for the runs of words at or after fromWord that may hold set
  // bits, in order, until visit returns true (then returns true). Owned storage is one run;
  // storage in a region skips the region's holes without touching them.
  template <typename Visit>
  bool forEachPopulatedRun(uint64_t fromWord, Visit visit) const;
  std::shared_ptr<Region> region_;   // set for storage inside a region
  uint64_t regionByteOffset_ = 0;    // where the words start in region_
  uint64_t ownedBytes_ = 0;          // > 0 for owned storage: the length of the mapping
  uint64_t* words_ = nullptr;
  uint64_t bitCount_ = 0;
  uint64_t wordCount_ = 0;
  uint64_t granularityBytes_ = 0;
  unsigned granularityShift_ = 0;
};

}  // namespace bm
