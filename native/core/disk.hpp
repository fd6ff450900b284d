// Notes on the design
// -------------------
// A Disk is an emulated physical disk on one Region, laid out as
//
//   [header: 4096][data: capacityBytes]
//
// The header (little endian, shared by every process that maps the region) holds the static
// geometry (magic "BMDISK01", version, sectorSize, capacityBytes, diskId: a random u64 chosen at
// creation so a RAID group can tell its members apart), then the live words: status, error
// counter, error threshold, I/O counters, the state of the fault generator, and a table of up to
// kMaxFaults fault rules. Because faults and status live in the region, a fault set by one
// process (the admin endpoint of a serve) is seen by every process that maps the disk, and a
// restarted controller finds its failed disk still failed.
//
// I/O never throws for a failure of the emulated medium: read() and write() return 0 or the
// errno the disk failed with, as a real device's completion would, so the RAID layer above can
// reconstruct or mark a member without unwinding. Range mistakes are RangeError.
//
// Fault rules (as nbdkit's error filter): each has the operations it applies to (read, write or
// both), a byte range (length 0: to the end of the disk), an errno (0: latency only, never
// fails), a rate in millionths (1,000,000: every matching I/O), "after N" (the first N matching
// I/Os pass), and a latency in microseconds added to every matching I/O. An I/O matches a rule
// when its operation is one of the rule's and its range overlaps the rule's. The rate is drawn
// from a seeded xorshift generator kept in the header, so a run replays from its seed.
//
// Status: normal, suspect (the error counter reached errorThreshold; 0 disables), failed (every
// I/O fails with EIO until heal()), spare (idle, waiting to replace a member), sparing (being
// copied to a spare). Every failed I/O adds one to the error counter. heal() removes the fault
// rules, clears the counter and returns a suspect or failed disk to normal; data is kept (the
// group decides whether a member whose writes failed is stale).
//
// Threads: one thread at a time does I/O on a Disk object (the JS thread of its controller);
// the shared words go through std::atomic_ref so that other processes may read them at any time.
// No allocation on the I/O path.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "region.hpp"

namespace bm {

enum class DiskStatus : uint32_t { Normal = 0, Suspect = 1, Failed = 2, Spare = 3, Sparing = 4 };

constexpr uint32_t kDiskRead = 1;
constexpr uint32_t kDiskWrite = 2;

struct DiskFault {
  uint32_t operations = kDiskRead | kDiskWrite;  // kDiskRead | kDiskWrite
  int32_t errnoValue = 5;                          // EIO; 0: latency only
  uint64_t byteOffset = 0;
  uint64_t byteLength = 0;              // 0: to the end of the disk
  uint32_t rateMillionths = 1000000;    // 0..1,000,000
  uint64_t afterCount = 0;              // the first afterCount matching I/Os pass
  uint32_t latencyUs = 0;               // added to every matching I/O
};

struct DiskFaultInfo {
  uint32_t index;
  DiskFault fault;
  uint64_t matchedCount;  // matching I/Os so far
  uint64_t firedCount;    // of them, failed by this rule
};

struct DiskOptions {
  uint64_t capacityBytes = 0;
  uint32_t sectorSize = 512;
  uint64_t errorThreshold = 0;  // 0: never suspect
  uint64_t seed = 1;            // of the fault rate generator; 0 is taken as 1
  DiskStatus status = DiskStatus::Normal;
};

struct DiskStats {
  uint64_t readCount, readBytes, writeCount, writeBytes;
  uint64_t readErrorCount, writeErrorCount, errorCount, delayedCount;
};

class Disk {
 public:
  static constexpr uint64_t kHeaderBytes = 4096;
  static constexpr uint32_t kMaxFaults = 8;
  static constexpr uint32_t kMaxLatencyUs = 10'000'000;
  static constexpr uint32_t kMinSectorSize = 512;
  static constexpr uint32_t kMaxSectorSize = 65536;

  static uint64_t regionBytesFor(uint64_t capacityBytes) noexcept;
  // Formats a new disk on `region` (size >= regionBytesFor(capacity)). RangeError for bad options.
  static std::unique_ptr<Disk> create(std::shared_ptr<Region> region, const DiskOptions& options);
  // Opens a formatted region (ERR_DISK_BAD_HEADER when it is not one).
  static std::unique_ptr<Disk> open(std::shared_ptr<Region> region);
  ~Disk();

  uint64_t diskId() const noexcept { return diskId_; }
  uint64_t capacityBytes() const noexcept { return capacityBytes_; }
  uint32_t sectorSize() const noexcept { return sectorSize_; }
  bool closed() const noexcept { return region_ == nullptr; }
  const std::shared_ptr<Region>& region() const;

  // 0 on success, else the errno of the failure (the target is then undefined for reads and the
  // disk unchanged for writes). RangeError outside the disk. A null source writes zeros.
  int read(uint64_t byteOffset, uint8_t* target, uint64_t byteLength);
  int write(uint64_t byteOffset, const uint8_t* source, uint64_t byteLength);

  // ERR_DISK_FAULT_LIMIT when all kMaxFaults rules are in use; RangeError for a bad rule.
  uint32_t addFault(const DiskFault& fault);
  // False when the index holds no rule.
  bool removeFault(uint32_t index);
  void clearFaults();
  std::vector<DiskFaultInfo> faults() const;

  void fail();
  void heal();
  DiskStatus status() const;
  void setStatus(DiskStatus status);
  uint64_t errorCount() const;
  uint64_t errorThreshold() const;
  void setErrorThreshold(uint64_t errorThreshold);
  DiskStats stats() const;
  void resetStats();

  void close() noexcept;

 private:
  Disk() = default;
  void checkOpen() const;
  void checkRange(const char* operation, uint64_t byteOffset, uint64_t byteLength) const;
  // Applies the fault rules to one I/O; returns the errno it fails with (0: it passes).
  int applyFaults(uint32_t operation, uint64_t byteOffset, uint64_t byteLength);
  void countError(uint32_t operation);
  uint32_t nextRandomMillionths();
  std::shared_ptr<Region> region_;
  uint8_t* header_ = nullptr;
  uint8_t* data_ = nullptr;
  uint64_t diskId_ = 0;
  uint64_t capacityBytes_ = 0;
  uint32_t sectorSize_ = 0;
};

}  // namespace bm
