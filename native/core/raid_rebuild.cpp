// Notes on the design
// -------------------
// Failing a member and rebuilding it (raid.hpp): startRebuild checks that the member failed,
// that no other rebuild runs and that enough members are left, cancels a sparing, puts the
// replacement disk in the member's place and sets the member rebuilding with its cursor at 0;
// each rebuildStep reconstructs a bounded run from the cursor (raid5: the XOR of the other
// members; raid1: any active mirror) and publishes the cursor after every chunk, so host writes
// interleave between steps. The member turns active when the cursor reaches memberBytes.
#include <algorithm>
#include <string>

#include "errors.hpp"
#include "raid.hpp"
#include "raid_internal.hpp"

namespace bm {

using namespace raid_internal;

void RaidGroup::failMember(uint32_t member) {
  checkOpen();
  if (member >= memberCount_) throw RangeError("member index out of range");
  if (stateOf(member) != MemberState::Failed) {
    setState(member, MemberState::Failed);
    bump(counters_.memberFailureCount);
  }
}

void RaidGroup::startRebuild(uint32_t member, std::shared_ptr<Disk> replacement) {
  checkOpen();
  if (member >= memberCount_) throw RangeError("member index out of range");
  if (!replacement || replacement->closed()) throw Error(Code::ERR_DISK_CLOSED, "the replacement disk is closed");
  if (level_ == RaidLevel::Single) throw Error(Code::ERR_RAID_MEMBER_STATE, "a single-disk group has nothing to rebuild from");
  if (stateOf(member) != MemberState::Failed) {
    throw Error(Code::ERR_RAID_MEMBER_STATE, "member " + std::to_string(member) + " is not failed");
  }
  if (rebuildingMember() != kNoMember) throw Error(Code::ERR_RAID_MEMBER_STATE, "another member is being rebuilt");
  cancelSparing();  // a member failed: a rebuild replaces the copy
  if (failedMemberCount() > redundancy()) {
    throw Error(Code::ERR_RAID_MEMBER_STATE, "too many members failed: there is nothing left to rebuild from");
  }
  if (replacement->capacityBytes() < memberBytes_) throw RangeError("the replacement disk is smaller than a member");
  for (uint32_t i = 0; i < memberCount_; i++) {
    if (i != member && disks_[i]->diskId() == replacement->diskId()) throw RangeError("the replacement disk is another member");
  }
  disks_[member] = std::move(replacement);
  uint8_t* entry = memberEntry(member);
  word64(entry, kEntryDiskId).store(disks_[member]->diskId(), std::memory_order_relaxed);
  word64(entry, kEntryCursor).store(0, std::memory_order_relaxed);
  setState(member, MemberState::Rebuilding);
}

uint64_t RaidGroup::rebuildStep(uint64_t maxBytes) {
  checkOpen();
  const uint32_t member = rebuildingMember();
  if (member == kNoMember) return 0;
  const uint64_t chunk = scratchA_.size();
  uint64_t cursor = cursorOf(member);
  const uint64_t rounded = std::max<uint64_t>(chunk, (maxBytes + chunk - 1) / chunk * chunk);
  const uint64_t end = std::min(memberBytes_, cursor + rounded);
  const uint64_t start = cursor;
  while (cursor < end) {
    const uint64_t n = std::min(chunk, end - cursor);
    bool have = false;
    if (level_ == RaidLevel::Raid5) {
      have = xorOthers(member, kNoMember, cursor, scratchA_.data(), n);
    } else {
      for (uint32_t k = 0; k < memberCount_ && !have; k++) {
        have = k != member && stateOf(k) == MemberState::Active && readMember(k, cursor, scratchA_.data(), n);
      }
    }
    if (!have) {
      bump(counters_.dataLostCount);
      throw Error(Code::ERR_RAID_READ_FAILED, "rebuild of member " + std::to_string(member) + " at disk offset " +
                                                  std::to_string(cursor) + ": another member is unreadable too (data lost there)");
    }
    if (!writeMember(member, cursor, allZero(scratchA_.data(), n) ? nullptr : scratchA_.data(), n, /*appendNew=*/false)) {
      throw Error(Code::ERR_RAID_WRITE_FAILED, "rebuild of member " + std::to_string(member) + ": the replacement disk failed a write");
    }
    cursor += n;
    word64(memberEntry(member), kEntryCursor).store(cursor, std::memory_order_release);
    bump(counters_.rebuildBytes, n);
  }
  if (cursor >= memberBytes_) setState(member, MemberState::Active);
  return cursor - start;
}

}  // namespace bm
