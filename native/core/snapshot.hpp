// Notes on the design
// -------------------
// A SnapshotStore holds the point-in-time copies (snapshots) of one volume, by copy-on-write. It
// is the volume's WriteInterceptor: step 2 of the write path (design section 4) calls
// preserve() with the range about to change, before the data is copied into the store.
//
// Creating a snapshot is instant: a directory entry and a bump of the create epoch, no copy. The
// volume is divided into chunks (chunkBytes, a power of two >= the block size, default 64 KiB).
// On the first change of a chunk after a snapshot was taken, the chunk's old bytes are copied
// into a chunk of the preallocated chunk store and the snapshot's chunk map points at it; later
// changes of that chunk cost one compare. Reading a snapshot takes preserved chunks from the
// chunk store and the others from the live volume (they have not changed since).
//
// Sharing: every snapshot that has not preserved chunk c yet needs exactly the bytes the volume
// holds now (c has not changed since the newest of them was taken), so one copy serves all of
// them: the store chunk gets a reference count and each of those snapshots' maps points at it.
// A write with N snapshots present copies a chunk at most once, whatever N is.
//
// The fast path: every volume chunk has a chunk epoch, the create epoch at its last change. When
// it equals the current create epoch, every snapshot already holds its copy of the chunk, and the
// write goes on after one load and one compare per chunk it touches. With no valid snapshot the
// interceptor returns after one load.
//
// Region layout (little endian; every offset a multiple of the page size past the header):
//   [header 4096: static fields + crc, shared words, directory of kMaxSnapshots entries]
//   [chunk maps: kMaxSnapshots x mapBytes]   u32 per volume chunk: 0 not preserved,
//                                            kZeroChunk preserved as zeros (a hole), else
//                                            store chunk index + 1
//   [chunk epochs: epochBytes]               u32 per volume chunk
//   [reference counts: countBytes]           u32 per store chunk
//   [free stack: countBytes]                 u32 store chunk indices
//   [chunk store: storeChunkCount x chunkBytes]
// The region is sparse: unused snapshot slots and untouched store chunks cost nothing. No
// allocation on the write path: store chunks come from the free stack or above the high-water
// mark, both sized at creation. A full chunk store never blocks or fails a host write: the
// snapshots that needed the chunk become invalid (reason overflow), are preserved into no more,
// and their reads fail with ERR_SNAPSHOT_INVALID; they keep their chunks until deleted.
//
// Durability and crashes (shared and file stores): everything above lives in the region, beside
// the volume. preserve() copies the old bytes into the store chunk, then writes the map entries,
// then a full fence, then the chunk epoch; only then does the volume copy the new data. A writer
// killed at any point leaves each snapshot either unpreserved (the live chunk still holds the old
// bytes: the new data was not being copied yet) or preserved in full. The allocator state
// (reference counts, free stack, high-water mark) changes only under the store lock; a process
// that takes the lock over from a dead holder rebuilds it from the chunk maps (recoverLocked), so
// a kill in the middle of preserve or delete leaks nothing.
//
// Locking: the store lock is a word in the header holding the holder's pid, shared by every
// process mapping the store (as the volume's directory lock). The slow path of preserve (a
// chunk not yet preserved), create, delete, restore's reads of the maps and the status calls
// take it; the fast path and snapshot reads do not. A snapshot read of a chunk reads the map
// entry, then the bytes, then the entry again: a writer in another process sets the entry before
// it touches the live chunk, so a read that found the entry still clear read the old bytes.
// Writes in flight in another process while a snapshot is created land on either side of it,
// chunk by chunk (an array makes no promise for I/O that is not yet acknowledged either).
//
// Threads: a SnapshotStore object is driven by one thread at a time, like its Volume (the
// binding serializes calls); several objects (processes, workers) may map the same store.
//
// Ownership: the store holds its Region and the Volume by shared_ptr and installs itself as the
// volume's interceptor; close() uninstalls it and unmaps. The volume's superblock carries a
// "needs interceptor" word set while a store exists: a Volume object without its store attached
// refuses writes with ERR_SNAPSHOT_DETACHED rather than changing bytes a snapshot still reads
// from the volume. destroy() deletes every snapshot, clears that word and closes.
//
// Errors: ERR_SNAPSHOT_CLOSED after close; ERR_SNAPSHOT_EXISTS, ERR_SNAPSHOT_NOT_FOUND,
// ERR_SNAPSHOT_LIMIT (all kMaxSnapshots slots in use, or the create epoch is exhausted);
// ERR_SNAPSHOT_INVALID (read or restore of an overflowed snapshot); ERR_SNAPSHOT_BAD_HEADER (a
// damaged store, or one of another volume); ERR_SNAPSHOT_ATTACHED (the volume object already
// has an interceptor). Caller mistakes are RangeError / ArgumentError.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "region.hpp"
#include "volume.hpp"

namespace bm {

struct SnapshotStoreOptions {
  // Unit of copy-on-write: a power of two from the volume's block size to kMaxChunkBytes.
  uint64_t chunkBytes = 64 * 1024;
  // Size of the chunk store (rounded up to whole chunks); 0: the volume's capacity.
  uint64_t storeBytes = 0;
};

enum class SnapshotState : uint32_t { Free = 0, Valid = 1, Invalid = 2 };

struct SnapshotInfo {
  std::string name;
  uint32_t slot;
  uint64_t id;         // random, never reused for another snapshot of this store
  uint64_t createdMs;  // wall clock at creation (ms since the epoch)
  SnapshotState state;
  uint64_t preservedChunkCount;  // map entries set (shared chunks counted once per snapshot)
};

struct SnapshotStoreStats {
  uint64_t chunkBytes;
  uint64_t storeChunkCount;
  uint64_t storeChunksUsed;
  uint64_t preserveCount;      // store chunks filled by copy-on-write
  uint64_t preserveBytes;      // bytes copied by copy-on-write
  uint64_t sharedCount;        // map entries that reused a copy made for another snapshot
  uint64_t zeroChunkCount;     // chunks preserved as holes (no store chunk)
  uint64_t overflowCount;      // snapshots invalidated because the store was full
  uint32_t snapshotCount;      // valid + invalid
};

class SnapshotStore final : public WriteInterceptor {
 public:
  static constexpr uint32_t kMaxSnapshots = 32;
  static constexpr size_t kMaxNameBytes = 47;
  static constexpr uint64_t kDefaultChunkBytes = 64 * 1024;
  static constexpr uint64_t kMaxChunkBytes = 16 * 1024 * 1024;
  static constexpr uint32_t kZeroChunk = UINT32_MAX;

  // Region bytes a store for this volume geometry needs.
  static uint64_t regionBytesFor(uint64_t capacityBytes, const SnapshotStoreOptions& options);
  // Formats a store on `region` for `volume` and attaches it (ERR_SNAPSHOT_ATTACHED when the
  // volume object has an interceptor already).
  static std::unique_ptr<SnapshotStore> create(std::shared_ptr<Region> region,
                                               std::shared_ptr<Volume> volume,
                                               const SnapshotStoreOptions& options);
  // Opens a formatted store of `volume` and attaches it (ERR_SNAPSHOT_BAD_HEADER when the region
  // is not one, or belongs to another volume).
  static std::unique_ptr<SnapshotStore> open(std::shared_ptr<Region> region,
                                             std::shared_ptr<Volume> volume);
  ~SnapshotStore() override;
  SnapshotStore(const SnapshotStore&) = delete;
  SnapshotStore& operator=(const SnapshotStore&) = delete;

  bool closed() const noexcept { return region_ == nullptr; }
  uint64_t chunkBytes() const noexcept { return chunkBytes_; }
  uint64_t chunkCount() const noexcept { return chunkCount_; }
  uint64_t storeChunkCount() const noexcept { return storeChunkCount_; }
  uint64_t capacityBytes() const noexcept { return capacityBytes_; }
  const std::shared_ptr<Volume>& volume() const noexcept { return volume_; }

  // Names are 1..47 bytes of [A-Za-z0-9._:-].
  SnapshotInfo createSnapshot(const std::string& name);
  void deleteSnapshot(const std::string& name);
  std::vector<SnapshotInfo> list() const;
  // ERR_SNAPSHOT_NOT_FOUND when absent.
  SnapshotInfo find(const std::string& name) const;

  // The calls below name a snapshot by slot and id (from createSnapshot/find); a slot whose
  // snapshot was deleted (or replaced) is ERR_SNAPSHOT_NOT_FOUND.
  SnapshotInfo info(uint32_t slot, uint64_t id) const;
  // The snapshot's bytes [byteOffset, +byteLength) (RangeError outside the volume;
  // ERR_SNAPSHOT_INVALID when it overflowed).
  void read(uint32_t slot, uint64_t id, uint64_t byteOffset, uint8_t* target,
            uint64_t byteLength) const;
  // Data/hole extents of the snapshot's image, merged, in order.
  std::vector<RegionExtent> allocationMap(uint32_t slot, uint64_t id, uint64_t byteOffset,
                                          uint64_t byteLength) const;
  // Makes the volume's content the snapshot's: every chunk the snapshot preserved is written
  // back through the volume's write path (so other snapshots preserve first, and bitmaps and the
  // journal see the writes). Returns the bytes written back.
  uint64_t restore(uint32_t slot, uint64_t id);

  SnapshotStoreStats stats() const;

  // Deletes every snapshot, clears the volume's "needs interceptor" word, then closes. The
  // caller unlinks a named region afterwards.
  void destroy();
  // Detaches from the volume and unmaps. Idempotent.
  void close() noexcept;

  // WriteInterceptor.
  void preserve(Volume& volume, uint64_t byteOffset, uint64_t byteLength) override;
  bool route(Volume& volume, uint64_t byteOffset, uint64_t byteLength, const uint8_t* data,
             RecordKind kind) override;
  // route() never takes a write over: a direct write may land in the volume (after preserve).
  bool mayRoute() const noexcept override { return false; }

 private:
  SnapshotStore() = default;
  void checkOpen() const;
  void attach();
  void layout();
  uint32_t* mapOf(uint32_t slot) const noexcept;
  std::atomic_ref<uint32_t> mapEntry(uint32_t slot, uint64_t chunkIndex) const noexcept;
  std::atomic_ref<uint32_t> chunkEpoch(uint64_t chunkIndex) const noexcept;
  uint8_t* storeChunk(uint32_t storeIndex) const noexcept;
  uint64_t chunkLength(uint64_t chunkIndex) const noexcept;
  // Slot of a live snapshot with this id (checked under or without the lock).
  uint32_t checkSlot(uint32_t slot, uint64_t id) const;
  // Preserves chunk c for every valid snapshot that lacks it; the caller holds the lock.
  void preserveChunkLocked(uint64_t chunkIndex, uint32_t epoch);
  // A store chunk index, or UINT32_MAX when the store is full.
  uint32_t allocateLocked() noexcept;
  void releaseLocked(uint32_t storeIndex);
  void freeSlotLocked(uint32_t slot);
  void invalidateLocked(uint32_t mask);
  void recoverLocked();
  // Calls fn(chunkIndex, entry) for every non-zero entry of a slot's map, skipping holes of the
  // map region without reading them.
  template <typename Fn>
  void forEachEntry(uint32_t slot, Fn&& fn) const;
  SnapshotInfo infoLocked(uint32_t slot) const;

  class Lock;

  std::shared_ptr<Region> region_;
  std::shared_ptr<Volume> volume_;
  uint8_t* header_ = nullptr;
  uint64_t capacityBytes_ = 0;
  uint64_t chunkBytes_ = 0;
  uint32_t chunkShift_ = 0;
  uint64_t chunkCount_ = 0;
  uint64_t storeChunkCount_ = 0;
  uint64_t mapBytes_ = 0;
  uint64_t mapsByteOffset_ = 0;
  uint64_t epochsByteOffset_ = 0;
  uint64_t countsByteOffset_ = 0;
  uint64_t freeStackByteOffset_ = 0;
  uint64_t storeByteOffset_ = 0;
  bool attached_ = false;
};

}  // namespace bm
