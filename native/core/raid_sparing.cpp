// Notes on the design
// -------------------
// Sparing (seed 004): a member whose disk turned suspect (its error counter crossed the disk's
// threshold) is copied onto a spare while it stays in service, and at the end the spare takes
// its place. It is a copy, not a rebuild: the chunk is read from the suspect disk itself, so the
// group keeps its redundancy all along; only a chunk the suspect cannot read is rebuilt from the
// other members (raid1: another mirror; raid5: the XOR of the stripe; single: nothing to rebuild
// from, ERR_RAID_READ_FAILED and the cursor stays, never zeros).
//
// Consistency with host writes: a write that reaches the member's disk below the copy cursor is
// also written to the spare (sparingMirror, called by writeMember after the member's write
// succeeded); above the cursor the copy will carry it. One thread at a time uses a RaidGroup, so
// a step and a write never interleave inside one chunk.
//
// State in the metadata header (bytes 48..71 of the 256-byte fixed header, zero in groups formatted
// before sparing existed, so those read as "no sparing"): member + 1 (0: none), the spare's disk
// id, the cursor. The swap at the end writes the member entry's disk id first and clears the
// sparing word second; open() finishes a swap a SIGKILL interrupted between the two
// (settleSparing). After open() the spare is not attached (the group does not own disks):
// resumeSparing(disk) checks its id and attaches it; until then nothing is mirrored and
// sparingStep refuses, so the caller must resume before writing (the controller does at open).
//
// No allocation: steps use the group's scratch buffers.
#include <algorithm>
#include <atomic>
#include <string>

#include "errors.hpp"
#include "raid.hpp"
#include "raid_internal.hpp"

namespace bm {

namespace {

constexpr uint64_t kSparingMemberOffset = 48;  // uint32: member + 1, 0 none
constexpr uint64_t kSparingDiskIdOffset = 56;
constexpr uint64_t kSparingCursorOffset = 64;
using raid_internal::kEntryDiskId;
using raid_internal::kMemberEntryBytes;
using raid_internal::kMemberTableOffset;
constexpr uint32_t kNone = raid_internal::kNoMember;
static_assert(kSparingCursorOffset + 8 <= kMemberTableOffset);

std::atomic_ref<uint32_t> word32(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + byteOffset));
}

std::atomic_ref<uint64_t> word64(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + byteOffset));
}

}  // namespace

RaidGroup::SparingInfo RaidGroup::sparing() const {
  checkOpen();
  const uint32_t word = word32(header_, kSparingMemberOffset).load(std::memory_order_acquire);
  if (word == 0) return SparingInfo{kNone, 0, 0, false};
  return SparingInfo{word - 1, word64(header_, kSparingDiskIdOffset).load(std::memory_order_relaxed),
                     word64(header_, kSparingCursorOffset).load(std::memory_order_relaxed), sparingDisk_ != nullptr};
}

void RaidGroup::startSparing(uint32_t member, std::shared_ptr<Disk> spare) {
  checkOpen();
  if (member >= memberCount_) throw RangeError("member index out of range");
  if (!spare || spare->closed()) throw Error(Code::ERR_DISK_CLOSED, "the spare disk is closed");
  if (stateOf(member) != MemberState::Active) {
    throw Error(Code::ERR_RAID_MEMBER_STATE, "member " + std::to_string(member) + " is not active (a failed member is rebuilt, not spared)");
  }
  if (rebuildingMember() != kNone) throw Error(Code::ERR_RAID_MEMBER_STATE, "a member is being rebuilt");
  if (sparing().member != kNone) throw Error(Code::ERR_RAID_MEMBER_STATE, "another member is being spared");
  if (spare->capacityBytes() < memberBytes_) throw RangeError("the spare disk is smaller than a member");
  for (uint32_t i = 0; i < memberCount_; i++) {
    if (disks_[i]->diskId() == spare->diskId()) throw RangeError("the spare disk is a member");
  }
  sparingDisk_ = std::move(spare);
  sparingWriteFailed_ = false;
  word64(header_, kSparingDiskIdOffset).store(sparingDisk_->diskId(), std::memory_order_relaxed);
  word64(header_, kSparingCursorOffset).store(0, std::memory_order_relaxed);
  word32(header_, kSparingMemberOffset).store(member + 1, std::memory_order_release);
}

void RaidGroup::resumeSparing(std::shared_ptr<Disk> spare) {
  checkOpen();
  const SparingInfo info = sparing();
  if (info.member == kNone) throw Error(Code::ERR_RAID_MEMBER_STATE, "no sparing to resume");
  if (!spare || spare->closed()) throw Error(Code::ERR_DISK_CLOSED, "the spare disk is closed");
  if (spare->diskId() != info.diskId) throw Error(Code::ERR_RAID_BAD_HEADER, "the disk is not the sparing's spare");
  sparingDisk_ = std::move(spare);
  sparingWriteFailed_ = false;
}

void RaidGroup::cancelSparing() noexcept {
  if (header_ == nullptr) return;
  word32(header_, kSparingMemberOffset).store(0, std::memory_order_release);
  sparingDisk_.reset();
  sparingWriteFailed_ = false;
}

void RaidGroup::settleSparing() noexcept {
  const uint32_t word = word32(header_, kSparingMemberOffset).load(std::memory_order_acquire);
  if (word == 0 || word > memberCount_) {
    if (word != 0) word32(header_, kSparingMemberOffset).store(0, std::memory_order_release);
    return;
  }
  const uint64_t diskId = word64(header_, kSparingDiskIdOffset).load(std::memory_order_relaxed);
  if (word64(header_ + kMemberTableOffset + (word - 1) * kMemberEntryBytes, kEntryDiskId).load(std::memory_order_relaxed) == diskId) {
    word32(header_, kSparingMemberOffset).store(0, std::memory_order_release);  // swapped, end not recorded
  }
}

void RaidGroup::sparingMirror(uint32_t member, uint64_t diskByteOffset, const uint8_t* source, uint64_t byteLength) noexcept {
  const uint32_t word = word32(header_, kSparingMemberOffset).load(std::memory_order_relaxed);
  if (word != member + 1 || sparingWriteFailed_) return;
  const uint64_t cursor = word64(header_, kSparingCursorOffset).load(std::memory_order_relaxed);
  if (diskByteOffset >= cursor) return;
  const uint64_t n = std::min(byteLength, cursor - diskByteOffset);
  try {
    if (sparingDisk_->write(diskByteOffset, source, n) != 0) sparingWriteFailed_ = true;
  } catch (const Error&) {
    sparingWriteFailed_ = true;  // the spare was closed under the sparing: the next step cancels it
  }
}

uint64_t RaidGroup::sparingStep(uint64_t maxBytes) {
  checkOpen();
  const SparingInfo info = sparing();
  if (info.member == kNone) return 0;
  const uint32_t member = info.member;
  if (!sparingDisk_) throw Error(Code::ERR_RAID_MEMBER_STATE, "the sparing's spare disk is not attached (resumeSparing)");
  if (stateOf(member) != MemberState::Active) {
    cancelSparing();
    throw Error(Code::ERR_RAID_MEMBER_STATE, "member " + std::to_string(member) + " failed during its sparing (a rebuild takes over)");
  }
  if (sparingWriteFailed_) {
    cancelSparing();
    throw Error(Code::ERR_RAID_WRITE_FAILED, "sparing of member " + std::to_string(member) + ": the spare disk failed a write");
  }
  const uint64_t chunk = scratchA_.size();
  uint64_t cursor = info.cursorBytes;
  const uint64_t rounded = std::max<uint64_t>(chunk, (maxBytes + chunk - 1) / chunk * chunk);
  const uint64_t end = std::min(memberBytes_, cursor + rounded);
  const uint64_t start = cursor;
  while (cursor < end) {
    const uint64_t n = std::min(chunk, end - cursor);
    bool have = disks_[member]->read(cursor, scratchA_.data(), n) == 0;
    if (!have && level_ == RaidLevel::Raid5) {
      have = xorOthers(member, kNone, cursor, scratchA_.data(), n);
      if (have) counters_.degradedReadCount.fetch_add(1, std::memory_order_relaxed);
    } else if (!have && level_ == RaidLevel::Raid1) {
      for (uint32_t k = 0; k < memberCount_ && !have; k++) {
        have = k != member && stateOf(k) == MemberState::Active && readMember(k, cursor, scratchA_.data(), n);
      }
    }
    if (!have) {
      counters_.dataLostCount.fetch_add(1, std::memory_order_relaxed);
      throw Error(Code::ERR_RAID_READ_FAILED, "sparing of member " + std::to_string(member) + " at disk offset " +
                                                  std::to_string(cursor) + ": the suspect disk cannot be read there and " +
                                                  (level_ == RaidLevel::Single ? "a single group has no redundancy" : "another member is unreadable too") +
                                                  " (data lost there)");
    }
    if (sparingDisk_->write(cursor, scratchA_.data(), n) != 0) {
      cancelSparing();
      throw Error(Code::ERR_RAID_WRITE_FAILED, "sparing of member " + std::to_string(member) + ": the spare disk failed a write");
    }
    cursor += n;
    word64(header_, kSparingCursorOffset).store(cursor, std::memory_order_release);
    counters_.rebuildBytes.fetch_add(n, std::memory_order_relaxed);
  }
  if (cursor >= memberBytes_) {
    // The swap: the member entry names the spare first, then the sparing ends (settleSparing).
    word64(memberEntry(member), kEntryDiskId).store(sparingDisk_->diskId(), std::memory_order_release);
    disks_[member] = std::move(sparingDisk_);
    word32(header_, kSparingMemberOffset).store(0, std::memory_order_release);
    sparingDisk_.reset();
  }
  return cursor - start;
}

}  // namespace bm
