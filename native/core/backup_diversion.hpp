// Notes on the design
// -------------------
// Diversion variant (a) of seed 004: while a weak group's failing disk is spared, new writes of a
// main volume's group share go to a secondary volume created on the fly in an unused group (a
// local pair in status "update data being backed up"), at the same offsets, and a differential
// bitmap marks the blocks whose newest bytes live there. Everything but the data lives in one
// region (shared: it survives a SIGKILL with the group's disks, which hold the secondary):
//   header (4096)  magic "BMBKUP01", block size, block count, state, copy-back cursor, counters;
//   bitmap         one bit per block of the main volume: set = the secondary holds its newest bytes.
// Order on a write of block b: a block not yet diverted is written whole to the secondary first
// (a partial write merged with the main's bytes) and its bit set after, so a SIGKILL in between
// leaves the bit clear and the main's (older, unacknowledged-write-free) bytes in force; a block
// already diverted is written in place on the secondary.
//
// Faults: a secondary write that fails for a block not yet diverted goes to the main instead
// (fallbackWrites); for a diverted block the secondary's copy is merged and written to the main
// and the bit cleared; when the secondary cannot even be read the error reaches the caller (the
// write fails with the group's code: never silent). A read of a diverted block that fails is the
// caller's error too (ERR_RAID_READ_FAILED).
//
// States: unused (writes pass to the main), diverting, copying-back (copyBackStep copies each
// set block back to the main and clears its bit; a host write to a diverted block first copies it
// back). When copy-back ends the bitmap is clear and the state unused.
//
// The seam is GroupExtent (raid.hpp), as for the work volume of variant (b): the volume's own
// region still takes every write. No allocation on the I/O path; one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "diversion.hpp"
#include "region.hpp"

namespace bm {

struct BackupStats {
  uint64_t divertedWrites, divertedReads, fallbackWrites, copiedBackBlocks;
};

class BackupVolume {
 public:
  static constexpr uint64_t kHeaderBytes = 4096;

  static uint64_t regionBytesFor(uint64_t byteLength, uint32_t blockBytes);
  // RangeError: blockBytes a power of two 512..1 MiB, byteLength a positive multiple of it.
  static std::shared_ptr<BackupVolume> create(std::shared_ptr<Region> region, uint64_t byteLength, uint32_t blockBytes);
  // ERR_DIVERSION_BAD_HEADER for a region that is not one.
  static std::shared_ptr<BackupVolume> open(std::shared_ptr<Region> region);

  uint64_t byteLength() const noexcept { return blockCount_ * blockBytes_; }
  uint32_t blockBytes() const noexcept { return blockBytes_; }
  uint64_t blockCount() const noexcept { return blockCount_; }
  WorkState state() const noexcept;
  bool diverted(uint64_t block) const noexcept;
  uint64_t divertedCount() const noexcept;
  uint64_t copyBackCursor() const noexcept;
  BackupStats stats() const noexcept;

  // The secondary (an extent of the unused group at least byteLength long); kept alive here.
  void setSecondary(std::shared_ptr<MainStore> secondary) noexcept { secondary_ = std::move(secondary); }
  bool hasSecondary() const noexcept { return secondary_ != nullptr; }
  // The main store copy-back writes to (GroupExtent::setBackup attaches, its destructor detaches).
  void attach(MainStore* main) noexcept { main_ = main; }
  void detach(MainStore* main) noexcept {
    if (main_ == main) main_ = nullptr;
  }

  // unused -> diverting (ERR_DIVERSION_STATE otherwise; also without a secondary).
  void start();
  // diverting -> copying-back (ERR_DIVERSION_STATE otherwise).
  void beginCopyBack();
  // Copies the set blocks among the next maxBlocks blocks back; returns the blocks walked, 0 at
  // the end (state unused). ERR_DIVERSION_STATE without an attached main or a secondary.
  uint64_t copyBackStep(uint64_t maxBlocks);

  // The I/O seam (GroupExtent).
  void store(uint64_t byteOffset, const uint8_t* data, uint64_t byteLength, MainStore& main);
  void load(uint64_t byteOffset, uint8_t* target, uint64_t byteLength, MainStore& main);

 private:
  BackupVolume() = default;
  void setBit(uint64_t block, bool value) noexcept;
  void copyBlockBack(uint64_t block, MainStore& main);

  std::shared_ptr<Region> region_;
  uint8_t* header_ = nullptr;
  uint64_t* bitmap_ = nullptr;
  uint64_t blockCount_ = 0;
  uint32_t blockBytes_ = 0;
  std::shared_ptr<MainStore> secondary_;
  MainStore* main_ = nullptr;
  std::vector<uint8_t> scratch_;
};

}  // namespace bm
