// Notes on the design
// -------------------
// A RaidGroup lays one linear address space (group byte offsets) over 1..kMaxMembers Disks:
//   - single: one disk, group offset = disk offset;
//   - raid1: an n-way mirror; every write goes to every writable member, a read is served by the
//     first member that can (the others are tried in turn when one fails);
//   - raid5: rotating parity with a configurable stripe unit U. Stripe s is the disk range
//     [s*U, (s+1)*U) of every member; it holds n-1 data units and one parity unit. The parity
//     member of stripe s is (n-1) - s mod n and data unit j lives on member (parity + 1 + j) mod n
//     (left-symmetric, as Linux md's default), so consecutive units walk every disk.
//     A write that covers whole stripes computes their parity from the new data alone
//     (full-stripe write); a smaller one reads the old data and parity and writes
//     parity ^ old ^ new (read-modify-write), or, when the old data cannot be read (its member
//     failed or is being rebuilt above the cursor), reads the other data units instead
//     (reconstruct-write). A read of an unreadable unit is the XOR of the rest of its stripe
//     (degraded read).
//
// Member states live in a small metadata region (magic "BMRAID01"): active, failed (a write to it
// failed or an operator said so: its bytes are stale until rebuilt) or rebuilding (a spare is
// being filled; the bytes below its cursor are current, those above are not, writes go to it
// everywhere). Each member's entry also keeps the diskId of the disk it was made of, so open()
// refuses disks that are not the group's (ERR_RAID_BAD_HEADER). A transient read error does not
// fail a member (the disk counts it; its threshold makes it suspect): the read is rebuilt from
// the others. A failed write does, and so does any failed I/O on a disk whose status is 'failed';
// the member stays failed until a rebuild.
//
// Data loss is never silent: when the bytes of a range cannot be produced (raid5 with two
// members unreadable in one stripe, every mirror failing, a single disk failing), read() throws
// ERR_RAID_READ_FAILED naming the range; a write that cannot be stored with redundancy left
// throws ERR_RAID_WRITE_FAILED. Both are counted (dataLostCount).
//
// A rebuild (startRebuild, then rebuildStep until it returns 0) reconstructs one member's disk
// range [cursor, memberBytes) in bounded steps; the caller (TypeScript) runs the steps off the
// write path, so host writes interleave between them. A raid5 rebuild that meets a second
// unreadable member stops with ERR_RAID_READ_FAILED and leaves the member rebuilding, cursor kept.
//
// Memory: scratch buffers of the stripe unit are allocated at create/open; read, write and
// rebuildStep allocate nothing. One thread at a time uses a RaidGroup object.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "disk.hpp"
#include "backup_diversion.hpp"
#include "diversion.hpp"
#include "errors.hpp"
#include "volume.hpp"
#include "region.hpp"

namespace bm {

enum class RaidLevel : uint32_t { Single = 0, Raid1 = 1, Raid5 = 2 };
enum class MemberState : uint32_t { Active = 0, Failed = 1, Rebuilding = 2 };

struct RaidOptions {
  RaidLevel level = RaidLevel::Single;
  uint64_t stripeUnitBytes = 64 * 1024;  // raid5 only
};

// Where one group byte offset lives: member, disk offset, and how many bytes from there stay in
// the same unit (so a caller can walk a range). parityMember is UINT32_MAX below raid5.
struct RaidLocation {
  uint32_t member;
  uint64_t diskByteOffset;
  uint64_t runBytes;
  uint64_t stripeIndex;
  uint32_t parityMember;
};

struct RaidMemberInfo {
  uint32_t member;
  MemberState state;
  uint64_t diskId;
  uint64_t rebuildCursorBytes;
};

// A span of the group's address space given to one volume (GroupExtent), kept in the metadata.
struct RaidExtent {
  std::string name;
  uint64_t groupByteOffset;
  uint64_t byteLength;
};

struct RaidStats {
  uint64_t readCount, writeCount;
  uint64_t fullStripeWriteCount, readModifyWriteCount, reconstructWriteCount;
  uint64_t degradedReadCount, memberFailureCount, dataLostCount, rebuildBytes;
};

class RaidGroup {
 public:
  static constexpr uint64_t kMetadataBytes = 4096;
  static constexpr uint32_t kMaxMembers = 16;
  static constexpr uint64_t kMaxStripeUnitBytes = 1024 * 1024;

  // Formats `metadata` for `disks` (all open, in member order). RangeError for a member count
  // the level does not allow or a stripe unit that is not a power of two from the largest sector
  // size to kMaxStripeUnitBytes.
  static std::unique_ptr<RaidGroup> create(std::shared_ptr<Region> metadata, std::vector<std::shared_ptr<Disk>> disks,
                                           const RaidOptions& options);
  // Opens formatted metadata with the member disks in order (a member being rebuilt: its new disk).
  static std::unique_ptr<RaidGroup> open(std::shared_ptr<Region> metadata, std::vector<std::shared_ptr<Disk>> disks);
  ~RaidGroup();

  RaidLevel level() const noexcept { return level_; }
  uint32_t memberCount() const noexcept { return memberCount_; }
  uint64_t stripeUnitBytes() const noexcept { return stripeUnitBytes_; }
  // Bytes of each member disk the group uses.
  uint64_t memberBytes() const noexcept { return memberBytes_; }
  uint64_t capacityBytes() const noexcept { return capacityBytes_; }
  bool closed() const noexcept { return metadata_ == nullptr; }

  RaidLocation map(uint64_t groupByteOffset) const;

  void read(uint64_t byteOffset, uint8_t* target, uint64_t byteLength);
  // A null source writes zeros.
  void write(uint64_t byteOffset, const uint8_t* source, uint64_t byteLength);

  RaidMemberInfo member(uint32_t member) const;
  const std::shared_ptr<Disk>& disk(uint32_t member) const;
  // Marks a member failed (an operator pulled it). ERR_RAID_WRITE_FAILED when that leaves the
  // group without its data (it is marked anyway: the state says what is true).
  void failMember(uint32_t member);
  uint32_t failedMemberCount() const;
  // Puts `replacement` (or the member's own disk, healed) in place of a failed member and starts
  // rebuilding it from cursor 0. ERR_RAID_MEMBER_STATE unless the member is failed and no other
  // member is rebuilding; RangeError when the disk is too small; single has nothing to rebuild
  // from (ERR_RAID_MEMBER_STATE).
  void startRebuild(uint32_t member, std::shared_ptr<Disk> replacement);
  // Rebuilds up to maxBytes (rounded up to the stripe unit) and returns the bytes done; 0 when no
  // rebuild is running. The member is active again once the cursor reaches memberBytes.
  uint64_t rebuildStep(uint64_t maxBytes);
  // The member being rebuilt, or UINT32_MAX.
  uint32_t rebuildingMember() const;

  // Volumes laid on the group: a first-fit allocator over the unused space, its table in the
  // metadata region (up to kMaxExtents). Offsets and lengths are rounded to extentAlignmentBytes()
  // (raid5: one stripe of data, so a volume's stripe-aligned writes are full-stripe writes).
  // allocateExtent: ERR_RAID_NO_SPACE when no gap is large enough or the table is full,
  // ERR_RAID_EXTENT_EXISTS for a name in use; names are 1..kMaxExtentNameBytes bytes.
  static constexpr uint32_t kMaxExtents = 48;
  static constexpr size_t kMaxExtentNameBytes = 39;
  uint64_t extentAlignmentBytes() const noexcept;
  RaidExtent allocateExtent(const std::string& name, uint64_t byteLength);
  // False when no extent has that name.
  bool freeExtent(const std::string& name);
  std::vector<RaidExtent> extents() const;
  // The extent of that name (ERR_RAID_EXTENT_NOT_FOUND).
  RaidExtent findExtent(const std::string& name) const;

  // Sparing (seed 004, native/core/raid_sparing.cpp): copies an active member's disk (a suspect
  // one) onto `spare` in bounded steps while the member stays in service. Writes to the member
  // below the copy cursor also go to the spare; a chunk the member cannot read is rebuilt from the
  // others (raid1: another mirror, raid5: parity; single: ERR_RAID_READ_FAILED, cursor kept). When
  // the cursor reaches memberBytes the spare takes the member's place (its disk id in the
  // metadata) and the old disk is out of the group. The member, the spare's disk id and the cursor
  // live in the metadata header: after open(), resumeSparing(spare) gives the disk back.
  // ERR_RAID_MEMBER_STATE when the member is not active or a rebuild or another sparing runs;
  // RangeError for a spare too small or already a member.
  void startSparing(uint32_t member, std::shared_ptr<Disk> spare);
  void resumeSparing(std::shared_ptr<Disk> spare);
  // Copies up to maxBytes (rounded up to the chunk) and returns the bytes done; 0 when no sparing
  // runs. ERR_RAID_MEMBER_STATE (sparing cancelled) when the member failed meanwhile (a rebuild
  // takes over), ERR_RAID_WRITE_FAILED (sparing cancelled) when the spare failed a write.
  uint64_t sparingStep(uint64_t maxBytes);
  struct SparingInfo {
    uint32_t member;  // UINT32_MAX: none
    uint64_t diskId;
    uint64_t cursorBytes;
    bool attached;  // the spare disk is known (false after open() until resumeSparing)
  };
  SparingInfo sparing() const;
  // Stops a sparing (the spare is no longer written); no-op when none runs.
  void cancelSparing() noexcept;

  // Diversion variant (c) (seed 004, diversion.hpp): while a work disk is set, every member I/O
  // of the host path and of rebuilds goes through it: a write appends the member block to the
  // work disk (a rebuild's write only updates blocks already diverted, so a rebuild takes no
  // slots), a read of a diverted block comes from it; the sparing copy reads the member's own
  // disk (the diverted blocks reach the spare at the copy-back, through the member that the spare
  // has become). mainKeys[m] is member m's key among the work disk's mains (registered here;
  // ERR_DIVERSION_MAINS_FULL). Copy-back writes each slot to its member's current disk. null
  // lifts it (the caller copies back first).
  void setWorkDisk(std::shared_ptr<WorkVolume> work, const std::vector<uint64_t>& mainKeys);
  const std::shared_ptr<WorkVolume>& workDisk() const noexcept { return workDisk_; }
  // Member m's main index in the work disk (UINT32_MAX without one).
  uint32_t workDiskMain(uint32_t member) const noexcept;

  RaidStats stats() const noexcept;
  void close() noexcept;

 private:
  // A member's own disk as a work disk's main store: throws SlotIoError on a failed I/O.
  class MemberStore final : public MainStore {
   public:
    RaidGroup* group = nullptr;
    uint32_t member = 0;
    void storeMain(uint64_t byteOffset, const uint8_t* data, uint64_t byteLength) override;
    void loadMain(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) override;
    bool rebuildMain(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) override;
  };
  // A member's bytes from the other members (raid5: their XOR; raid1: another mirror), through
  // the work disk; false when they cannot be read.
  bool rebuildFromOthers(uint32_t member, uint64_t diskByteOffset, uint8_t* target, uint64_t byteLength);
  // The member's disk itself (and the sparing's spare below its cursor): 0 or the errno.
  int rawWrite(uint32_t member, uint64_t diskByteOffset, const uint8_t* source, uint64_t byteLength);
  RaidGroup() = default;
  void checkOpen() const;
  void setup();
  uint8_t* memberEntry(uint32_t member) const noexcept;
  MemberState stateOf(uint32_t member) const noexcept;
  void setState(uint32_t member, MemberState state) noexcept;
  uint64_t cursorOf(uint32_t member) const noexcept;
  bool readable(uint32_t member, uint64_t diskByteOffset, uint64_t byteLength) const noexcept;
  bool writable(uint32_t member) const noexcept { return stateOf(member) != MemberState::Failed; }
  // Reads from a member; false on failure (the member is marked failed when its disk is).
  bool readMember(uint32_t member, uint64_t diskByteOffset, uint8_t* target, uint64_t byteLength);
  // Writes to a member (through a work disk when one is set: appendNew false for a rebuild's
  // write); a failure marks it failed and returns false.
  bool writeMember(uint32_t member, uint64_t diskByteOffset, const uint8_t* source, uint64_t byteLength,
                   bool appendNew = true);
  uint32_t redundancy() const noexcept;
  // XOR of every member but `skip` (and `skipAlso`) at [diskByteOffset, +byteLength) into target
  // (overwritten); false when one of them cannot be read.
  bool xorOthers(uint32_t skip, uint32_t skipAlso, uint64_t diskByteOffset, uint8_t* target, uint64_t byteLength);
  void readUnit(const RaidLocation& location, uint64_t groupByteOffset, uint8_t* target, uint64_t byteLength);
  void readMirror(uint64_t byteOffset, uint8_t* target, uint64_t byteLength);
  void writeMirror(uint64_t byteOffset, const uint8_t* source, uint64_t byteLength);
  void writeStripeFull(uint64_t stripeIndex, const uint8_t* source);
  void writeUnitPartial(const RaidLocation& location, uint64_t groupByteOffset, const uint8_t* source,
                        uint64_t byteLength);
  [[noreturn]] void dataLost(const char* operation, uint64_t byteOffset, uint64_t byteLength, const char* why);
  // Sparing: mirrors a member write below the copy cursor to the spare (raid_sparing.cpp).
  void sparingMirror(uint32_t member, uint64_t diskByteOffset, const uint8_t* source, uint64_t byteLength) noexcept;
  // At open(): a sparing whose swap was recorded but not its end is finished.
  void settleSparing() noexcept;

  std::shared_ptr<Region> metadata_;
  uint8_t* header_ = nullptr;
  std::vector<std::shared_ptr<Disk>> disks_;
  RaidLevel level_ = RaidLevel::Single;
  uint32_t memberCount_ = 0;
  uint64_t stripeUnitBytes_ = 0;
  uint64_t memberBytes_ = 0;
  uint64_t capacityBytes_ = 0;
  uint32_t nextMirror_ = 0;
  std::shared_ptr<Disk> sparingDisk_;
  bool sparingWriteFailed_ = false;
  std::shared_ptr<WorkVolume> workDisk_;
  uint32_t workMains_[kMaxMembers] = {};
  MemberStore memberStores_[kMaxMembers];
  // Scratch of one stripe unit each (raid1: 64 KiB): old data, old parity / xor accumulator, zeros.
  std::vector<uint8_t> scratchA_, scratchB_, scratchC_, zeros_;
  struct Counters {
    std::atomic<uint64_t> readCount{0}, writeCount{0}, fullStripeWriteCount{0}, readModifyWriteCount{0};
    std::atomic<uint64_t> reconstructWriteCount{0}, degradedReadCount{0}, memberFailureCount{0};
    std::atomic<uint64_t> dataLostCount{0}, rebuildBytes{0};
  } counters_;
};

// The BackingStore a volume on a group uses (volume.hpp): offsets of the volume map to
// [groupByteOffset, +byteLength) of the group. A store failure (ERR_RAID_WRITE_FAILED) is kept
// and thrown by finishBatch, after the volume's bitmaps and journal saw the batch; load throws at
// once (ERR_RAID_READ_FAILED). Holds the group by shared_ptr; one thread at a time.
class GroupExtent final : public BackingStore, public MainStore {
 public:
  GroupExtent(std::shared_ptr<RaidGroup> group, uint64_t groupByteOffset, uint64_t byteLength);
  void store(uint64_t byteOffset, const uint8_t* data, uint64_t byteLength) override;
  void load(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) override;
  void finishBatch() override;
  uint64_t groupByteOffset() const noexcept { return groupByteOffset_; }
  uint64_t byteLength() const noexcept { return byteLength_; }
  const std::shared_ptr<RaidGroup>& group() const noexcept { return group_; }
  // Diversion (seed 004 variant (b), diversion.hpp): while a work volume is set, stores and loads
  // go through it (it appends, reads diverted blocks, or passes to storeMain/loadMain).
  void setWorkVolume(std::shared_ptr<WorkVolume> work, uint32_t main) noexcept;
  ~GroupExtent() override;
  const std::shared_ptr<WorkVolume>& workVolume() const noexcept { return work_; }
  // Diversion variant (a) (backup_diversion.hpp): while a backup volume is set (it wins over a
  // work volume), stores and loads go through it.
  // ERR_DIVERSION_STATE when another backup volume is in use behind it (copy it back first); null lifts.
  void setBackup(std::shared_ptr<BackupVolume> backup);
  const std::shared_ptr<BackupVolume>& backup() const noexcept { return backup_; }
  // The group's share with no diversion (MainStore): storeMain throws the group's error.
  void storeMain(uint64_t byteOffset, const uint8_t* data, uint64_t byteLength) override;
  void loadMain(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) override;

 private:
  std::shared_ptr<RaidGroup> group_;
  uint64_t groupByteOffset_;
  uint64_t byteLength_;
  bool failed_ = false;
  std::shared_ptr<WorkVolume> work_;
  std::shared_ptr<BackupVolume> backup_;
  uint32_t main_ = 0;
  Code failedCode_ = Code::ERR_RAID_WRITE_FAILED;
  std::string failedMessage_;
};

}  // namespace bm
