// Notes on the design
// -------------------
// Diversion variant (c) in a RaidGroup (seed 004; the tables are diversion.hpp's WorkVolume with
// a data disk): setWorkDisk lays a work disk under every member, MemberStore is a member's own
// disk as the work disk's main store (what copy-back writes and merges read), and
// rebuildFromOthers gives a member's bytes from the other members when the work disk cannot read
// its copy. The member I/O that goes through the work disk is readMember/writeMember (raid.cpp).
// setWorkDisk checks everything before it lets the work disk in use go: a refused call changes
// nothing.
#include <algorithm>
#include <atomic>
#include <string>

#include "errors.hpp"
#include "raid.hpp"
#include "raid_internal.hpp"

namespace bm {

using raid_internal::kNoMember;

void RaidGroup::MemberStore::storeMain(uint64_t byteOffset, const uint8_t* data, uint64_t byteLength) {
  const int failure = group->rawWrite(member, byteOffset, data, byteLength);
  if (failure != 0) throw SlotIoError{failure};
}

void RaidGroup::MemberStore::loadMain(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) {
  const int failure = group->disks_[member]->read(byteOffset, target, byteLength);
  if (failure != 0) throw SlotIoError{failure};
}

bool RaidGroup::MemberStore::rebuildMain(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) {
  return group->rebuildFromOthers(member, byteOffset, target, byteLength);
}

bool RaidGroup::rebuildFromOthers(uint32_t member, uint64_t diskByteOffset, uint8_t* target, uint64_t byteLength) {
  if (level_ == RaidLevel::Raid5) {
    // xorOthers reads through scratchC_: no caller of writeMember holds it (they use A and B).
    const uint64_t chunk = scratchC_.size();
    for (uint64_t done = 0; done < byteLength; done += chunk) {
      if (!xorOthers(member, kNoMember, diskByteOffset + done, target + done, std::min(chunk, byteLength - done))) return false;
    }
    counters_.degradedReadCount.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  if (level_ == RaidLevel::Raid1) {
    for (uint32_t k = 0; k < memberCount_; k++) {
      if (k != member && readable(k, diskByteOffset, byteLength) && readMember(k, diskByteOffset, target, byteLength)) return true;
    }
  }
  return false;
}

void RaidGroup::setWorkDisk(std::shared_ptr<WorkVolume> work, const std::vector<uint64_t>& mainKeys) {
  checkOpen();
  auto lift = [&] {
    for (uint32_t m = 0; m < memberCount_ && workDisk_; m++) workDisk_->detach(&memberStores_[m]);
    workDisk_.reset();
  };
  if (!work) {
    lift();
    return;
  }
  // Everything is checked before the current work disk is let go: a refused call changes nothing.
  if (work->dataDisk() == nullptr) throw RangeError("a work disk keeps its slots on a disk (a work volume goes behind a volume's extent)");
  if (mainKeys.size() != memberCount_) throw RangeError("one main key per member is needed");
  for (uint32_t m = 0; m < memberCount_; m++) {
    if (disks_[m] == work->dataDisk()) throw RangeError("the work disk is a member of the group");
  }
  if (workDisk_ && workDisk_ != work && workDisk_->state() != WorkState::Unused) {
    throw Error(Code::ERR_DIVERSION_STATE, "the group diverts to another work disk in use (copy it back and lift it first)");
  }
  const auto known = work->mains();
  uint32_t fresh = 0;
  for (uint32_t m = 0; m < memberCount_; m++) {
    if (std::find(known.begin(), known.end(), mainKeys[m]) == known.end()) fresh++;
  }
  if (known.size() + fresh > WorkVolume::kMaxMains) throw Error(Code::ERR_DIVERSION_MAINS_FULL, "the work disk cannot take this group's members as mains");
  lift();
  uint32_t mains[kMaxMembers];
  for (uint32_t m = 0; m < memberCount_; m++) mains[m] = work->registerMain(mainKeys[m]);
  for (uint32_t m = 0; m < memberCount_; m++) {
    workMains_[m] = mains[m];
    memberStores_[m].group = this;
    memberStores_[m].member = m;
    work->attach(mains[m], &memberStores_[m]);
  }
  workDisk_ = std::move(work);
}

uint32_t RaidGroup::workDiskMain(uint32_t member) const noexcept {
  return workDisk_ && member < memberCount_ ? workMains_[member] : UINT32_MAX;
}

}  // namespace bm
