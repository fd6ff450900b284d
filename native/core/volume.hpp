// Notes on the design
// -------------------
// A Volume is a logical block device on one Region, laid out as
//
//   [superblock: 4096][bitmap slots: kBitmapSlotCount x slotBytes][data: capacityBytes]
//
// The superblock (little endian) holds: magic "BMVOLUM1", version, blockSize, flags (strict),
// capacityBytes, dataByteOffset, slotBytes, volumeId (random u64 at creation), a crc32c over
// those static fields, then a directory of kBitmapSlotCount entries {state, granularityBytes,
// bitCount, recording, name[48]} and an atomic directoryGeneration bumped on every change. Every
// process that opens the volume by name maps the same region, so it sees the same bytes and the
// same bitmaps; before each write batch it compares directoryGeneration with the one it cached
// and reloads the directory when it moved (one relaxed atomic load per batch). Bitmap slots are
// reserved for the finest granularity a volume bitmap may use (kMinVolumeGranularityBytes); the
// region is sparse, so reserved and untouched slots cost nothing.
//
// Block size is a power of two from 512 to 65536 (default 4096); capacity is a multiple of it.
// Any byte offset and length inside the volume is served (a memory store has no sectors); a
// strict volume rejects requests not aligned to the block size (RangeError), as a device that
// refuses misaligned I/O would. Every request of a batch is validated before any byte changes.
//
// The write path (design section 4), for each write of a batch, in this order, no allocation:
//   1. validate range and alignment (done for the whole batch first);
//   2. interceptor->preserve(): the copy-on-write seam (snapshots), a no-op without one;
//   3. interceptor->route(): the diversion seam (RAID protection); may take the write over;
//   4. copy into the store;
//   5. mark every recording bitmap of the directory;
//   6. append to the attached journal; the record's sequence (0 when no journal is attached,
//      kJournalFull when the ring had no room: the caller falls back to its bitmap).
// The same path serves writeZeroes and trim (kind Zero/Trim, no payload in the journal).
// A batch runs steps 2-4 for every request, one sequentially consistent fence, then steps 5-6
// for every request: each write still has its data stored before its bits and its record, and
// the fence lets step 5 skip words already set (Bitmap::markBytesAfterFence), so rewriting dirty
// tracks costs no locked instruction. Consumers of a recording bitmap clear, then read.
//
// Ownership: the Volume holds its Region by shared_ptr and its Journal by shared_ptr (attach is
// per process). close() is idempotent and releases both; use after close throws
// ERR_VOLUME_CLOSED. Stats are atomic counters, cheap to read from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bitmap.hpp"
#include "journal.hpp"
#include "region.hpp"

namespace bm {

class Volume;

// The seams for copy-on-write and diversion. Both default to doing nothing; later layers
// (snapshots, RAID sparing protection) install one and compose their own chain behind it.
class WriteInterceptor {
 public:
  virtual ~WriteInterceptor() = default;
  // Step 2: called before the store changes, with the range about to be overwritten.
  virtual void preserve(Volume& volume, uint64_t byteOffset, uint64_t byteLength) = 0;
  // Step 3: return true when the interceptor stored the write itself (step 4 is skipped; steps
  // 5 and 6 still run, so bitmaps and journals see every write).
  virtual bool route(Volume& volume, uint64_t byteOffset, uint64_t byteLength,
                     const uint8_t* data /* null for zero/trim */, RecordKind kind) = 0;
  // False when route() never takes a write over (then a direct write may land its bytes in the
  // store itself: Volume::beginDirectWrite). The default is the safe answer.
  virtual bool mayRoute() const noexcept { return true; }
};

// Step 4 on a RAID group (native/core/raid.hpp, GroupExtent): when a backing store is set, every
// write, zero and trim is stored through it as well (after the volume's own store, which stays the
// image snapshots preserve from), read() reads through it (so a failed disk's degraded reads and
// data loss reach the host), and direct writes fall back to the batched path. A store failure is
// kept until the batch's bitmaps and journal are done, then finishBatch() throws it.
class BackingStore {
 public:
  virtual ~BackingStore() = default;
  virtual void store(uint64_t byteOffset, const uint8_t* data /* null: zeros */, uint64_t byteLength) = 0;
  virtual void load(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) = 0;
  virtual void finishBatch() = 0;
};

struct VolumeOptions {
  uint64_t capacityBytes = 0;
  uint32_t blockSize = 4096;
  bool strict = false;
};

struct WriteRequest {
  uint64_t byteOffset;
  uint64_t byteLength;
  const uint8_t* data;  // byteLength bytes; ignored for Zero/Trim
  RecordKind kind;      // Write, Zero or Trim
  // Zero only: the range may be released (holes punched) instead of written with zeros.
  bool mayPunchHole = false;
};

struct VolumeStats {
  uint64_t readCount, readBytes;
  uint64_t writeCount, writeBytes;
  uint64_t zeroCount, zeroBytes;
  uint64_t trimCount, trimBytes;
  uint64_t flushCount;
  uint64_t batchCount;
  uint64_t journalAppendCount;
  uint64_t journalFullCount;
  uint64_t bitmapMarkCount;
};

struct BitmapSlotInfo {
  std::string name;
  uint32_t slot;
  uint64_t granularityBytes;
  uint64_t bitCount;
  bool recording;
};

class Volume {
 public:
  static constexpr uint64_t kSuperblockBytes = 4096;
  static constexpr uint32_t kBitmapSlotCount = 16;
  static constexpr uint64_t kMinVolumeGranularityBytes = 4096;
  static constexpr uint64_t kJournalFull = UINT64_MAX;
  static constexpr size_t kMaxBitmapNameBytes = 47;
  static constexpr uint32_t kMinBlockSize = 512;
  static constexpr uint32_t kMaxBlockSize = 65536;

  // Region bytes a volume of this capacity needs (superblock + slots + data).
  static uint64_t regionBytesFor(uint64_t capacityBytes) noexcept;
  // Formats a new volume on `region` (size >= regionBytesFor(capacity)).
  static std::unique_ptr<Volume> create(std::shared_ptr<Region> region,
                                        const VolumeOptions& options);
  // Opens a formatted region (ERR_VOLUME_BAD_SUPERBLOCK when it is not one).
  static std::unique_ptr<Volume> open(std::shared_ptr<Region> region);
  ~Volume();

  uint64_t volumeId() const noexcept { return volumeId_; }
  uint64_t capacityBytes() const noexcept { return capacityBytes_; }
  uint32_t blockSize() const noexcept { return blockSize_; }
  bool strict() const noexcept { return strict_; }
  bool closed() const noexcept { return region_ == nullptr; }
  const std::shared_ptr<Region>& region() const;
  uint64_t dataByteOffset() const noexcept { return dataByteOffset_; }
  // Base of the data area (for interceptors and zero-copy views).
  uint8_t* data() const;

  // Throws RangeError when the range is outside the volume or misaligned on a strict volume.
  void checkRange(uint64_t byteOffset, uint64_t byteLength) const;

  void read(uint64_t byteOffset, uint8_t* target, uint64_t byteLength);
  // One write; returns its journal sequence (see the design note for 0 and kJournalFull).
  uint64_t write(uint64_t byteOffset, const uint8_t* source, uint64_t byteLength);
  // The batched write path: validates all, then applies in order; sequencesOut (may be null)
  // gets one sequence per request. Returns how many requests hit a full journal.
  size_t writeBatch(const WriteRequest* requests, size_t count, uint64_t* sequencesOut);
  uint64_t writeZeroes(uint64_t byteOffset, uint64_t byteLength, bool mayPunchHole);
  // Direct write (a payload received straight into the store, docs/nbd-receive.md): begin
  // validates the range (as write()), runs the copy-on-write seam and marks every recording
  // bitmap, then returns where the bytes belong (data() + byteOffset); the caller lands them
  // there itself, then calls commitDirectWrite with the same range, which runs the seam again
  // (a snapshot created meanwhile), fences, marks the bitmaps again (data before bits, as
  // write()) and appends the journal record from the store; it returns the sequence as write().
  // A caller that cannot complete the bytes (the client vanished) still commits: the store holds
  // what landed, and bitmaps and journal must describe it. begin returns null (nothing done)
  // when the write cannot land in the store: an interceptor that may route (diversion), or an
  // empty range. No state is kept between the calls: any number may be open at once.
  uint8_t* beginDirectWrite(uint64_t byteOffset, uint64_t byteLength);
  uint64_t commitDirectWrite(uint64_t byteOffset, uint64_t byteLength);
  uint64_t trim(uint64_t byteOffset, uint64_t byteLength);
  // Flush: File regions msync+fsync the range; memory regions fence.
  void flush();

  // Data/hole extents of the data area, offsets relative to the volume.
  std::vector<RegionExtent> allocationMap(uint64_t byteOffset, uint64_t byteLength) const;

  // Bitmap directory. Names are 1..47 bytes of [A-Za-z0-9._:-]. A new bitmap starts clear.
  // ERR_BITMAP_EXISTS, ERR_BITMAP_LIMIT (all slots used), RangeError for a bad granularity
  // (power of two, kMinVolumeGranularityBytes..2^30).
  std::shared_ptr<Bitmap> createBitmap(const std::string& name, uint64_t granularityBytes,
                                       bool recording);
  // ERR_BITMAP_NOT_FOUND when absent.
  std::shared_ptr<Bitmap> openBitmap(const std::string& name);
  void deleteBitmap(const std::string& name);
  void setBitmapRecording(const std::string& name, bool recording);
  std::vector<BitmapSlotInfo> listBitmaps() const;

  // Journal attachment (this process only). Passing null detaches.
  void attachJournal(std::shared_ptr<Journal> journal);
  const std::shared_ptr<Journal>& journal() const noexcept { return journal_; }

  // Backing store seam (not owned; null: the volume's region is the only store).
  void setBackingStore(BackingStore* store) noexcept { backing_ = store; }
  BackingStore* backingStore() const noexcept { return backing_; }

  // Interceptor seam (not owned).
  void setInterceptor(WriteInterceptor* interceptor) noexcept { interceptor_ = interceptor; }
  WriteInterceptor* interceptor() const noexcept { return interceptor_; }
  // The "needs interceptor" word of the superblock, shared by every process mapping the volume:
  // while it is set (a snapshot store exists), a Volume object with no interceptor installed
  // refuses writes with ERR_SNAPSHOT_DETACHED instead of changing bytes a snapshot still reads
  // from the volume. Part of the directory: changing it bumps the directory generation, so the
  // write path reads the cached copy and pays nothing per batch.
  void setInterceptorRequired(bool required);
  bool interceptorRequired() const;

  VolumeStats stats() const noexcept;
  void close() noexcept;

 private:
  Volume() = default;
  void checkOpen() const;
  // checkRange() with the operation named in the message ("write [0, +4096) is outside ...").
  void checkRequest(const char* operation, uint64_t byteOffset, uint64_t byteLength) const;
  // Rebuilds recording_ from the directory; the caller holds the directory lock.
  void loadDirectoryLocked();
  void refreshDirectoryIfChanged();
  // Per-batch counts, added to the shared counters once per batch.
  struct BatchTally {
    uint64_t writeCount = 0, writeBytes = 0, zeroCount = 0, zeroBytes = 0;
    uint64_t trimCount = 0, trimBytes = 0, bitmapMarkCount = 0;
    uint64_t journalAppendCount = 0, journalFullCount = 0;
  };
  // Steps 2-4 (seams and the store) and steps 5-6 (bitmaps and journal) of one request.
  void listIntents(Journal& journal, const WriteRequest* requests, size_t count) noexcept;
  void storeOne(const WriteRequest& request, BatchTally& tally);
  uint64_t recordOne(const WriteRequest& request, BatchTally& tally);
  std::shared_ptr<Region> region_;
  std::shared_ptr<Journal> journal_;
  WriteInterceptor* interceptor_ = nullptr;
  BackingStore* backing_ = nullptr;
  uint8_t* superblock_ = nullptr;
  uint8_t* data_ = nullptr;
  uint64_t volumeId_ = 0;
  uint64_t capacityBytes_ = 0;
  uint64_t dataByteOffset_ = 0;
  uint64_t slotBytes_ = 0;
  uint32_t blockSize_ = 0;
  bool strict_ = false;
  // Cached recording bitmaps (views into the slots), rebuilt when the generation moves. Fixed
  // capacity: no allocation on the write path.
  uint32_t cachedGeneration_ = UINT32_MAX;
  std::shared_ptr<Bitmap> recording_[kBitmapSlotCount];
  uint32_t recordingCount_ = 0;
  bool interceptorRequired_ = false;
  // Counters, atomic so stats() may read them from any thread. The write-path ones have one
  // writer (the thread that calls writeBatch; a Volume object is used by one thread at a time,
  // each worker or process opens its own) and are updated by relaxed load+store once per batch;
  // flushCount may be bumped by concurrent flushes on the thread pool and uses fetch_add.
  struct Counters {
    std::atomic<uint64_t> readCount{0}, readBytes{0}, writeCount{0}, writeBytes{0};
    std::atomic<uint64_t> zeroCount{0}, zeroBytes{0}, trimCount{0}, trimBytes{0};
    std::atomic<uint64_t> flushCount{0}, batchCount{0}, journalAppendCount{0};
    std::atomic<uint64_t> journalFullCount{0}, bitmapMarkCount{0};
  } counters_;
};

}  // namespace bm
