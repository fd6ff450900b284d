// Notes on the design
// -------------------
// See bitmap.hpp for the contract. Implementation notes:
//   - Owned storage is a private anonymous mapping, not a memfd Region: it is as sparse (a
//     bitmap for a 1 TiB volume at 4 KiB tracks is 32 MiB of words and must cost nothing until
//     bits are set), takes no file descriptor, and reading untouched words (count, find) maps
//     the shared zero page instead of allocating, which a shared memfd mapping would do.
//   - Every store to a word goes through std::atomic_ref, also whole-word stores in range
//     operations, so concurrent writers on other threads or processes never see a torn word.
//     Relaxed order inside an operation, one release fence at its end (readers that need more
//     hold the hold gate).
//   - Storage inside a region is scanned hole-aware (count, find, orMerge, clearAll): for a
//     shared-memory region, merely reading a hole allocates its page, and a volume bitmap slot
//     for 1 TiB at 4 KiB tracks is 32 MiB. serialize, copyFrom and swap read every word.
//   - The bits past bitCount in the last word stay zero: range operations mask them out, the
//     region constructor clears them, deserialize refuses input that has them set.
#include "bitmap.hpp"

#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <bit>
#include <cerrno>
#include <cstring>
#include <string>

#include "byte_order.hpp"
#include "crc32c.hpp"
#include "errors.hpp"

namespace bm {

namespace {

// 2^40 tracks: a 64 PiB volume at 64 KiB tracks; 128 GiB of words (sparse).
constexpr uint64_t kMaxBitCount = uint64_t{1} << 40;

constexpr uint64_t kSerializedMagic = 0x50414D5449424D42ull;  // "BMBITMAP" little endian
constexpr uint32_t kSerializedVersion = 1;
constexpr size_t kSerializedHeaderBytes = 40;
constexpr size_t kSerializedTrailerBytes = 4;

inline uint64_t loadWord(const uint64_t* word) noexcept {
  return std::atomic_ref<const uint64_t>(*word).load(std::memory_order_relaxed);
}
inline void storeWord(uint64_t* word, uint64_t value) noexcept {
  std::atomic_ref<uint64_t>(*word).store(value, std::memory_order_relaxed);
}
inline uint64_t orWord(uint64_t* word, uint64_t mask) noexcept {
  return std::atomic_ref<uint64_t>(*word).fetch_or(mask, std::memory_order_relaxed);
}
inline uint64_t andWord(uint64_t* word, uint64_t mask) noexcept {
  return std::atomic_ref<uint64_t>(*word).fetch_and(mask, std::memory_order_relaxed);
}

// Mask of bits [fromBit, toBit) within one word, 0 <= fromBit < toBit <= 64.
inline uint64_t bitMask(unsigned fromBit, unsigned toBit) noexcept {
  const uint64_t high = toBit == 64 ? ~uint64_t{0} : (uint64_t{1} << toBit) - 1;
  return high & (~uint64_t{0} << fromBit);
}

// Mask of the valid bits of the last word.
inline uint64_t lastWordMask(uint64_t bitCount) noexcept {
  const unsigned used = static_cast<unsigned>(bitCount & 63);
  return used == 0 ? ~uint64_t{0} : (uint64_t{1} << used) - 1;
}

void validateGeometry(uint64_t bitCount, uint64_t granularityBytes) {
  if (granularityBytes < Bitmap::kMinGranularityBytes ||
      granularityBytes > Bitmap::kMaxGranularityBytes || !std::has_single_bit(granularityBytes)) {
    throw RangeError("bitmap granularity " + std::to_string(granularityBytes) +
                     " bytes must be a power of two from 512 to 2^30");
  }
  if (bitCount > kMaxBitCount) {
    throw RangeError("bitmap bitCount " + std::to_string(bitCount) + " exceeds the limit of 2^40");
  }
}

// The parsed view of a serialized bitmap; words point into the input.
struct Serialized {
  uint64_t granularityBytes;
  uint64_t bitCount;
  uint64_t wordCount;
  const uint8_t* words;
};

Serialized parseSerialized(const uint8_t* bytes, size_t byteLength) {
  auto formatError = [](const std::string& why) {
    return Error(Code::ERR_BITMAP_FORMAT, "serialized bitmap: " + why);
  };
  if (bytes == nullptr || byteLength < kSerializedHeaderBytes + 8 + kSerializedTrailerBytes) {
    throw formatError("too short (" + std::to_string(byteLength) + " bytes)");
  }
  if (readLittleEndian<uint64_t>(bytes) != kSerializedMagic) throw formatError("bad magic");
  const uint32_t version = readLittleEndian<uint32_t>(bytes + 8);
  if (version != kSerializedVersion) {
    throw formatError("unsupported version " + std::to_string(version));
  }
  Serialized parsed{};
  parsed.granularityBytes = readLittleEndian<uint64_t>(bytes + 16);
  parsed.bitCount = readLittleEndian<uint64_t>(bytes + 24);
  parsed.wordCount = readLittleEndian<uint64_t>(bytes + 32);
  // Division, not multiplication: a garbage wordCount must not overflow into a small size.
  const uint64_t wordBytesAvailable = byteLength - kSerializedHeaderBytes - kSerializedTrailerBytes;
  if (parsed.wordCount == 0 || wordBytesAvailable % 8 != 0 ||
      parsed.wordCount != wordBytesAvailable / 8) {
    throw formatError("wordCount " + std::to_string(parsed.wordCount) + " does not match " +
                      std::to_string(byteLength) + " bytes of input");
  }
  const size_t crcByteOffset = byteLength - kSerializedTrailerBytes;
  const uint32_t storedCrc = readLittleEndian<uint32_t>(bytes + crcByteOffset);
  const uint32_t actualCrc = crc32c(0, bytes, crcByteOffset);
  if (storedCrc != actualCrc) {
    throw Error(Code::ERR_BITMAP_CHECKSUM, "serialized bitmap: checksum mismatch (stored " +
                                               std::to_string(storedCrc) + ", computed " +
                                               std::to_string(actualCrc) + ")");
  }
  if (parsed.granularityBytes < Bitmap::kMinGranularityBytes ||
      parsed.granularityBytes > Bitmap::kMaxGranularityBytes ||
      !std::has_single_bit(parsed.granularityBytes)) {
    throw formatError("bad granularity " + std::to_string(parsed.granularityBytes));
  }
  if (parsed.bitCount > kMaxBitCount ||
      parsed.wordCount != Bitmap::storageBytes(parsed.bitCount) / 8) {
    throw formatError("bitCount " + std::to_string(parsed.bitCount) + " does not match wordCount " +
                      std::to_string(parsed.wordCount));
  }
  parsed.words = bytes + kSerializedHeaderBytes;
  const uint64_t last = readLittleEndian<uint64_t>(parsed.words + (parsed.wordCount - 1) * 8);
  const uint64_t tailMask = parsed.bitCount == 0 ? 0 : lastWordMask(parsed.bitCount);
  if ((last & ~tailMask) != 0) {
    throw formatError("bits set past bitCount");
  }
  return parsed;
}

}  // namespace

uint64_t Bitmap::storageBytes(uint64_t bitCount) noexcept {
  const uint64_t wordCount = bitCount == 0 ? 1 : (bitCount + 63) / 64;
  return wordCount * 8;
}

uint64_t Bitmap::bitCountFor(uint64_t coveredBytes, uint64_t granularityBytes) noexcept {
  if (granularityBytes == 0) return 0;
  return coveredBytes / granularityBytes + (coveredBytes % granularityBytes != 0 ? 1 : 0);
}

Bitmap::Bitmap(uint64_t bitCount, uint64_t granularityBytes) {
  validateGeometry(bitCount, granularityBytes);
  const uint64_t byteLength = storageBytes(bitCount);
  void* storage = mmap(nullptr, byteLength, PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (storage == MAP_FAILED) {
    const int e = errno;
    throw Error(Code::ERR_REGION_MAP,
                "cannot map " + std::to_string(byteLength) + " bytes for a bitmap: " +
                    std::strerror(e),
                e);
  }
  ownedBytes_ = byteLength;
  words_ = static_cast<uint64_t*>(storage);
  bitCount_ = bitCount;
  wordCount_ = storageBytes(bitCount) / 8;
  granularityBytes_ = granularityBytes;
  granularityShift_ = static_cast<unsigned>(std::countr_zero(granularityBytes));
}

Bitmap::Bitmap(std::shared_ptr<Region> region, uint64_t byteOffset, uint64_t bitCount,
               uint64_t granularityBytes) {
  validateGeometry(bitCount, granularityBytes);
  if (!region) throw ArgumentError("bitmap region must not be null");
  const uint64_t byteLength = storageBytes(bitCount);
  if (byteOffset % 8 != 0) {
    throw RangeError("bitmap byteOffset " + std::to_string(byteOffset) + " is not 8-aligned");
  }
  if (byteLength > region->byteLength() || byteOffset > region->byteLength() - byteLength) {
    throw RangeError("bitmap [" + std::to_string(byteOffset) + ", +" + std::to_string(byteLength) +
                     ") is outside the region (" + std::to_string(region->byteLength()) +
                     " bytes)");
  }
  words_ = reinterpret_cast<uint64_t*>(region->data() + byteOffset);
  region_ = std::move(region);
  regionByteOffset_ = byteOffset;
  bitCount_ = bitCount;
  wordCount_ = byteLength / 8;
  granularityBytes_ = granularityBytes;
  granularityShift_ = static_cast<unsigned>(std::countr_zero(granularityBytes));
  // Restore the tail invariant on bytes someone else wrote (a region may hold anything); a hole
  // is zero already, and touching it would allocate it.
  const uint64_t lastWordByteOffset = regionByteOffset_ + (wordCount_ - 1) * 8;
  RegionExtent extent{};
  if (region_->nextAllocated(lastWordByteOffset, lastWordByteOffset + 8, extent)) {
    andWord(&words_[wordCount_ - 1], bitCount_ == 0 ? 0 : lastWordMask(bitCount_));
  }
}

Bitmap::~Bitmap() { close(); }

void Bitmap::checkOpen() const {
  if (words_ == nullptr) throw Error(Code::ERR_BITMAP_CLOSED, "bitmap is closed");
}

uint64_t* Bitmap::words() const {
  checkOpen();
  return words_;
}

void Bitmap::close() noexcept {
  if (ownedBytes_ > 0 && words_ != nullptr) munmap(words_, ownedBytes_);
  ownedBytes_ = 0;
  words_ = nullptr;
  region_.reset();
}

static void checkIndex(uint64_t index, uint64_t bitCount) {
  if (index >= bitCount) {
    throw RangeError("bit index " + std::to_string(index) + " is outside the bitmap (" +
                     std::to_string(bitCount) + " bits)");
  }
}

static void checkBitRange(uint64_t first, uint64_t count, uint64_t bitCount) {
  if (count > bitCount || first > bitCount - count) {
    throw RangeError("bit range [" + std::to_string(first) + ", +" + std::to_string(count) +
                     ") is outside the bitmap (" + std::to_string(bitCount) + " bits)");
  }
}

bool Bitmap::set(uint64_t index) {
  checkOpen();
  checkIndex(index, bitCount_);
  const uint64_t mask = uint64_t{1} << (index & 63);
  return (orWord(&words_[index >> 6], mask) & mask) != 0;
}

bool Bitmap::clear(uint64_t index) {
  checkOpen();
  checkIndex(index, bitCount_);
  const uint64_t mask = uint64_t{1} << (index & 63);
  const bool wasSet = (andWord(&words_[index >> 6], ~mask) & mask) != 0;
  std::atomic_thread_fence(std::memory_order_seq_cst);  // clear-then-read (bitmap.hpp)
  return wasSet;
}

bool Bitmap::test(uint64_t index) const {
  checkOpen();
  checkIndex(index, bitCount_);
  return ((loadWord(&words_[index >> 6]) >> (index & 63)) & 1) != 0;
}

// Applies `setting` to bits [first, first+count), already validated. Partial edge words use
// read-modify-write; whole inner words are plain atomic stores, which have the same effect.
static void applyRange(uint64_t* words, uint64_t first, uint64_t count, bool setting) noexcept {
  if (count == 0) return;
  const uint64_t last = first + count - 1;
  const uint64_t firstWord = first >> 6;
  const uint64_t lastWord = last >> 6;
  const unsigned firstBit = static_cast<unsigned>(first & 63);
  const unsigned lastBit = static_cast<unsigned>(last & 63);
  auto apply = [&](uint64_t wordIndex, uint64_t mask) {
    if (setting) {
      orWord(&words[wordIndex], mask);
    } else {
      andWord(&words[wordIndex], ~mask);
    }
  };
  if (firstWord == lastWord) {
    apply(firstWord, bitMask(firstBit, lastBit + 1));
  } else {
    apply(firstWord, bitMask(firstBit, 64));
    for (uint64_t w = firstWord + 1; w < lastWord; w++) storeWord(&words[w], setting ? ~uint64_t{0} : 0);
    apply(lastWord, bitMask(0, lastBit + 1));
  }
  // Clearing ends with a full fence: the clear-then-read protocol (bitmap.hpp) needs the clear
  // ordered before the consumer's reads of the track's data.
  std::atomic_thread_fence(setting ? std::memory_order_release : std::memory_order_seq_cst);
}

void Bitmap::setRange(uint64_t first, uint64_t count) {
  checkOpen();
  checkBitRange(first, count, bitCount_);
  applyRange(words_, first, count, true);
}

void Bitmap::clearRange(uint64_t first, uint64_t count) {
  checkOpen();
  checkBitRange(first, count, bitCount_);
  applyRange(words_, first, count, false);
}

void Bitmap::markBytes(uint64_t byteOffset, uint64_t byteLength) noexcept {
  if (words_ == nullptr || byteLength == 0 || bitCount_ == 0) return;
  const uint64_t first = byteOffset >> granularityShift_;
  if (first >= bitCount_) return;
  // Saturating end: a byteOffset near UINT64_MAX must not wrap around to track 0.
  const uint64_t lastByte = byteLength - 1 > UINT64_MAX - byteOffset ? UINT64_MAX
                                                                     : byteOffset + byteLength - 1;
  const uint64_t last = std::min(lastByte >> granularityShift_, bitCount_ - 1);
  applyRange(words_, first, last - first + 1, true);
}

// Sets bits [first, first+count), already validated, skipping the read-modify-write of words
// that already hold every bit asked for (see markBytesAfterFence in bitmap.hpp).
static void setRangeTestFirst(uint64_t* words, uint64_t first, uint64_t count) noexcept {
  if (count == 0) return;
  const uint64_t last = first + count - 1;
  const uint64_t firstWord = first >> 6;
  const uint64_t lastWord = last >> 6;
  auto set = [&](uint64_t wordIndex, uint64_t mask) {
    if ((loadWord(&words[wordIndex]) & mask) != mask) orWord(&words[wordIndex], mask);
  };
  if (firstWord == lastWord) {
    set(firstWord, bitMask(static_cast<unsigned>(first & 63), static_cast<unsigned>(last & 63) + 1));
    return;
  }
  set(firstWord, bitMask(static_cast<unsigned>(first & 63), 64));
  for (uint64_t w = firstWord + 1; w < lastWord; w++) set(w, ~uint64_t{0});
  set(lastWord, bitMask(0, static_cast<unsigned>(last & 63) + 1));
}

void Bitmap::markBytesAfterFence(uint64_t byteOffset, uint64_t byteLength) noexcept {
  if (words_ == nullptr || byteLength == 0 || bitCount_ == 0) return;
  const uint64_t first = byteOffset >> granularityShift_;
  if (first >= bitCount_) return;
  const uint64_t lastByte = byteLength - 1 > UINT64_MAX - byteOffset ? UINT64_MAX
                                                                     : byteOffset + byteLength - 1;
  const uint64_t last = std::min(lastByte >> granularityShift_, bitCount_ - 1);
  setRangeTestFirst(words_, first, last - first + 1);
}

template <typename Visit>
bool Bitmap::forEachPopulatedRun(uint64_t fromWord, Visit visit) const {
  if (!region_) return fromWord < wordCount_ && visit(fromWord, wordCount_);
  const uint64_t endByteOffset = regionByteOffset_ + wordCount_ * 8;
  uint64_t position = regionByteOffset_ + fromWord * 8;
  RegionExtent extent{};
  while (position < endByteOffset && region_->nextAllocated(position, endByteOffset, extent)) {
    // Extents start and end on page boundaries or on the range's ends: all 8-aligned here.
    const uint64_t firstWord = (extent.byteOffset - regionByteOffset_) / 8;
    const uint64_t endWord = (extent.byteOffset + extent.byteLength - regionByteOffset_ + 7) / 8;
    if (visit(firstWord, std::min(endWord, wordCount_))) return true;
    position = extent.byteOffset + extent.byteLength;
  }
  return false;
}

void Bitmap::clearAll() {
  checkOpen();
  if (region_) {
    // Punching the storage clears it and returns its pages; a concurrent set lands either
    // before (and is cleared) or after (on a fresh zero page): per word, that is atomic.
    region_->trim(regionByteOffset_, wordCount_ * 8);
    std::atomic_thread_fence(std::memory_order_seq_cst);
    return;
  }
  for (uint64_t w = 0; w < wordCount_; w++) {
    // Reading first keeps untouched (sparse) pages unallocated: storing zero would fault them in.
    if (loadWord(&words_[w]) != 0) storeWord(&words_[w], 0);
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);  // clear-then-read (bitmap.hpp)
}

void Bitmap::setAll() {
  checkOpen();
  if (bitCount_ == 0) return;
  applyRange(words_, 0, bitCount_, true);
}

uint64_t Bitmap::count() const {
  checkOpen();
  uint64_t total = 0;
  const uint64_t tailMask = bitCount_ == 0 ? 0 : lastWordMask(bitCount_);
  forEachPopulatedRun(0, [&](uint64_t firstWord, uint64_t endWord) {
    for (uint64_t w = firstWord; w < endWord; w++) {
      total += static_cast<uint64_t>(std::popcount(loadWord(&words_[w])));
    }
    if (endWord == wordCount_) BM_ASSERT((loadWord(&words_[wordCount_ - 1]) & ~tailMask) == 0);
    return false;
  });
  return total;
}

uint64_t Bitmap::findNextSet(uint64_t from) const {
  checkOpen();
  if (from >= bitCount_) return kNone;
  const uint64_t fromWord = from >> 6;
  uint64_t found = kNone;
  forEachPopulatedRun(fromWord, [&](uint64_t firstWord, uint64_t endWord) {
    for (uint64_t w = firstWord; w < endWord; w++) {
      uint64_t word = loadWord(&words_[w]);
      if (w == fromWord) word &= ~uint64_t{0} << (from & 63);
      if (word != 0) {
        found = (w << 6) + static_cast<uint64_t>(std::countr_zero(word));
        return true;
      }
    }
    return false;
  });
  return found < bitCount_ ? found : kNone;
}

uint64_t Bitmap::findNextClear(uint64_t from) const {
  checkOpen();
  if (from >= bitCount_) return kNone;
  const uint64_t fromWord = from >> 6;
  uint64_t found = kNone;
  // Words before the next populated run are in a hole: all clear.
  uint64_t position = fromWord;
  forEachPopulatedRun(fromWord, [&](uint64_t firstWord, uint64_t endWord) {
    if (firstWord > position) {
      found = std::max(position << 6, from);
      return true;
    }
    for (uint64_t w = std::max(firstWord, fromWord); w < endWord; w++) {
      uint64_t word = ~loadWord(&words_[w]);
      if (w == fromWord) word &= ~uint64_t{0} << (from & 63);
      if (word != 0) {
        found = (w << 6) + static_cast<uint64_t>(std::countr_zero(word));
        return true;
      }
    }
    position = endWord;
    return false;
  });
  if (found == kNone && position < wordCount_) found = std::max(position << 6, from);
  return found < bitCount_ ? found : kNone;
}

static void checkSameGeometry(const Bitmap& a, const Bitmap& b, const char* operation) {
  if (a.bitCount() != b.bitCount() || a.granularityBytes() != b.granularityBytes()) {
    throw Error(Code::ERR_BITMAP_GEOMETRY,
                std::string(operation) + ": bitmaps differ in geometry (" +
                    std::to_string(a.bitCount()) + " bits of " +
                    std::to_string(a.granularityBytes()) + " bytes vs " +
                    std::to_string(b.bitCount()) + " bits of " +
                    std::to_string(b.granularityBytes()) + " bytes)");
  }
}

void Bitmap::orMerge(const Bitmap& other) {
  checkOpen();
  other.checkOpen();
  checkSameGeometry(*this, other, "orMerge");
  other.forEachPopulatedRun(0, [&](uint64_t firstWord, uint64_t endWord) {
    for (uint64_t w = firstWord; w < endWord; w++) {
      const uint64_t bits = loadWord(&other.words_[w]);
      if (bits != 0) orWord(&words_[w], bits);
    }
    return false;
  });
  std::atomic_thread_fence(std::memory_order_release);
}

void Bitmap::swap(Bitmap& other) {
  checkOpen();
  other.checkOpen();
  checkSameGeometry(*this, other, "swap");
  if (words_ == other.words_) return;
  for (uint64_t w = 0; w < wordCount_; w++) {
    const uint64_t mine = loadWord(&words_[w]);
    const uint64_t theirs = loadWord(&other.words_[w]);
    if (mine == theirs) continue;  // also keeps zero pages of both sides unallocated
    storeWord(&words_[w], theirs);
    storeWord(&other.words_[w], mine);
  }
  std::atomic_thread_fence(std::memory_order_release);
}

void Bitmap::copyFrom(const Bitmap& other) {
  checkOpen();
  other.checkOpen();
  checkSameGeometry(*this, other, "copyFrom");
  if (words_ == other.words_) return;
  for (uint64_t w = 0; w < wordCount_; w++) {
    const uint64_t bits = loadWord(&other.words_[w]);
    if (loadWord(&words_[w]) != bits) storeWord(&words_[w], bits);
  }
  std::atomic_thread_fence(std::memory_order_release);
}

uint64_t Bitmap::serializedBytes() const noexcept {
  return kSerializedHeaderBytes + wordCount_ * 8 + kSerializedTrailerBytes;
}

std::vector<uint8_t> Bitmap::serialize() const {
  checkOpen();
  std::vector<uint8_t> bytes(serializedBytes());
  uint8_t* out = bytes.data();
  writeLittleEndian<uint64_t>(out, kSerializedMagic);
  writeLittleEndian<uint32_t>(out + 8, kSerializedVersion);
  writeLittleEndian<uint32_t>(out + 12, 0);
  writeLittleEndian<uint64_t>(out + 16, granularityBytes_);
  writeLittleEndian<uint64_t>(out + 24, bitCount_);
  writeLittleEndian<uint64_t>(out + 32, wordCount_);
  for (uint64_t w = 0; w < wordCount_; w++) {
    writeLittleEndian<uint64_t>(out + kSerializedHeaderBytes + w * 8, loadWord(&words_[w]));
  }
  const size_t crcByteOffset = bytes.size() - kSerializedTrailerBytes;
  writeLittleEndian<uint32_t>(out + crcByteOffset, crc32c(0, out, crcByteOffset));
  return bytes;
}

std::unique_ptr<Bitmap> Bitmap::deserialize(const uint8_t* bytes, size_t byteLength) {
  const Serialized parsed = parseSerialized(bytes, byteLength);
  auto bitmap = std::make_unique<Bitmap>(parsed.bitCount, parsed.granularityBytes);
  for (uint64_t w = 0; w < parsed.wordCount; w++) {
    const uint64_t bits = readLittleEndian<uint64_t>(parsed.words + w * 8);
    if (bits != 0) storeWord(&bitmap->words_[w], bits);
  }
  std::atomic_thread_fence(std::memory_order_release);
  return bitmap;
}

void Bitmap::deserializeInto(const uint8_t* bytes, size_t byteLength) {
  checkOpen();
  const Serialized parsed = parseSerialized(bytes, byteLength);
  if (parsed.bitCount != bitCount_ || parsed.granularityBytes != granularityBytes_) {
    throw Error(Code::ERR_BITMAP_GEOMETRY,
                "deserializeInto: input has " + std::to_string(parsed.bitCount) + " bits of " +
                    std::to_string(parsed.granularityBytes) + " bytes, this bitmap " +
                    std::to_string(bitCount_) + " bits of " + std::to_string(granularityBytes_) +
                    " bytes");
  }
  for (uint64_t w = 0; w < wordCount_; w++) {
    const uint64_t bits = readLittleEndian<uint64_t>(parsed.words + w * 8);
    if (loadWord(&words_[w]) != bits) storeWord(&words_[w], bits);
  }
  std::atomic_thread_fence(std::memory_order_release);
}

}  // namespace bm
