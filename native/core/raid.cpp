// Notes on the design
// -------------------
// See raid.hpp for the model (levels, member states, data loss, rebuild, memory). This file:
// member states and member I/O (through the work disk when one is set), the raid5 map, the read
// and write paths, stats and close. The rest of RaidGroup, by concern: raid_metadata.cpp
// (format, open, the extent table), raid_rebuild.cpp (failing and rebuilding a member),
// raid_sparing.cpp (sparing), raid_workdisk.cpp (the work disk under the members) and
// raid_extent.cpp (GroupExtent); raid_internal.hpp holds what the first three share.
#include "raid.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "errors.hpp"
#include "raid_internal.hpp"

namespace bm {

using namespace raid_internal;

namespace {

void xorInto(uint8_t* target, const uint8_t* source, uint64_t byteLength) noexcept {
  // A plain loop: the compiler vectorizes it at -O3.
  for (uint64_t i = 0; i < byteLength; i++) target[i] ^= source[i];
}

}  // namespace

RaidGroup::~RaidGroup() { close(); }

void RaidGroup::checkOpen() const {
  if (metadata_ == nullptr) throw Error(Code::ERR_RAID_CLOSED, "RAID group is closed");
}

uint8_t* RaidGroup::memberEntry(uint32_t member) const noexcept {
  return header_ + kMemberTableOffset + member * kMemberEntryBytes;
}

MemberState RaidGroup::stateOf(uint32_t member) const noexcept {
  return static_cast<MemberState>(word32(memberEntry(member), kEntryState).load(std::memory_order_relaxed));
}

void RaidGroup::setState(uint32_t member, MemberState state) noexcept {
  word32(memberEntry(member), kEntryState).store(static_cast<uint32_t>(state), std::memory_order_release);
}

uint64_t RaidGroup::cursorOf(uint32_t member) const noexcept {
  return word64(memberEntry(member), kEntryCursor).load(std::memory_order_relaxed);
}

bool RaidGroup::readable(uint32_t member, uint64_t diskByteOffset, uint64_t byteLength) const noexcept {
  const MemberState state = stateOf(member);
  if (state == MemberState::Active) return true;
  return state == MemberState::Rebuilding && diskByteOffset + byteLength <= cursorOf(member);
}

uint32_t RaidGroup::redundancy() const noexcept {
  switch (level_) {
    case RaidLevel::Single: return 0;
    case RaidLevel::Raid1: return memberCount_ - 1;
    default: return 1;
  }
}

uint32_t RaidGroup::failedMemberCount() const {
  checkOpen();
  uint32_t count = 0;
  for (uint32_t i = 0; i < memberCount_; i++) count += stateOf(i) == MemberState::Failed;
  return count;
}

uint32_t RaidGroup::rebuildingMember() const {
  checkOpen();
  for (uint32_t i = 0; i < memberCount_; i++) {
    if (stateOf(i) == MemberState::Rebuilding) return i;
  }
  return kNoMember;
}

int RaidGroup::rawWrite(uint32_t member, uint64_t diskByteOffset, const uint8_t* source, uint64_t byteLength) {
  const int failure = disks_[member]->write(diskByteOffset, source, byteLength);
  if (failure == 0 && sparingDisk_) sparingMirror(member, diskByteOffset, source, byteLength);
  return failure;
}

bool RaidGroup::writeMember(uint32_t member, uint64_t diskByteOffset, const uint8_t* source, uint64_t byteLength,
                            bool appendNew) {
  int failure = 0;
  if (workDisk_) {
    try {
      workDisk_->store(workMains_[member], diskByteOffset, source, byteLength, memberStores_[member], appendNew);
    } catch (const SlotIoError& error) {
      failure = error.errnoValue;
    }
  } else {
    failure = rawWrite(member, diskByteOffset, source, byteLength);
  }
  if (failure == 0) return true;
  // A single disk has no redundancy to fall back on and nothing to rebuild from: the failed write
  // is the caller's error, and the disk stays in use (its faults may heal).
  if (level_ != RaidLevel::Single && stateOf(member) != MemberState::Failed) {
    setState(member, MemberState::Failed);
    bump(counters_.memberFailureCount);
  }
  return false;
}

bool RaidGroup::readMember(uint32_t member, uint64_t diskByteOffset, uint8_t* target, uint64_t byteLength) {
  if (workDisk_) {
    try {
      workDisk_->load(workMains_[member], diskByteOffset, target, byteLength, memberStores_[member]);
      return true;
    } catch (const SlotIoError&) {
      // below: a transient error unless the member's disk failed
    }
  } else if (disks_[member]->read(diskByteOffset, target, byteLength) == 0) {
    return true;
  }
  // A transient read error leaves the member in place (its disk counts the error); a disk that
  // reports itself failed is a failed member from now on.
  if (level_ != RaidLevel::Single && stateOf(member) != MemberState::Failed && disks_[member]->status() == DiskStatus::Failed) {
    setState(member, MemberState::Failed);
    bump(counters_.memberFailureCount);
  }
  return false;
}

void RaidGroup::dataLost(const char* operation, uint64_t byteOffset, uint64_t byteLength, const char* why) {
  bump(counters_.dataLostCount);
  throw Error(operation[0] == 'r' ? Code::ERR_RAID_READ_FAILED : Code::ERR_RAID_WRITE_FAILED,
              std::string(levelName(level_)) + " group " + operation + " [" + std::to_string(byteOffset) + ", +" +
                  std::to_string(byteLength) + "): " + why);
}

RaidLocation RaidGroup::map(uint64_t groupByteOffset) const {
  checkOpen();
  if (groupByteOffset >= capacityBytes_) {
    throw RangeError("group offset " + std::to_string(groupByteOffset) + " is outside the group (" +
                     std::to_string(capacityBytes_) + " bytes)");
  }
  if (level_ != RaidLevel::Raid5) {
    uint32_t member = 0;
    if (level_ == RaidLevel::Raid1) {
      while (member + 1 < memberCount_ && !readable(member, groupByteOffset, 1)) member++;
    }
    return RaidLocation{member, groupByteOffset, capacityBytes_ - groupByteOffset, 0, kNoMember};
  }
  const uint64_t unit = stripeUnitBytes_;
  const uint64_t dataPerStripe = unit * (memberCount_ - 1);
  const uint64_t stripe = groupByteOffset / dataPerStripe;
  const uint64_t within = groupByteOffset % dataPerStripe;
  const uint32_t parity = memberCount_ - 1 - static_cast<uint32_t>(stripe % memberCount_);
  const uint32_t member = (parity + 1 + static_cast<uint32_t>(within / unit)) % memberCount_;
  const uint64_t inUnit = within % unit;
  return RaidLocation{member, stripe * unit + inUnit, unit - inUnit, stripe, parity};
}

bool RaidGroup::xorOthers(uint32_t skip, uint32_t skipAlso, uint64_t diskByteOffset, uint8_t* target, uint64_t byteLength) {
  BM_ASSERT(byteLength <= scratchC_.size());
  std::memset(target, 0, byteLength);
  for (uint32_t j = 0; j < memberCount_; j++) {
    if (j == skip || j == skipAlso) continue;
    if (!readable(j, diskByteOffset, byteLength)) return false;
    if (!readMember(j, diskByteOffset, scratchC_.data(), byteLength)) return false;
    xorInto(target, scratchC_.data(), byteLength);
  }
  return true;
}

void RaidGroup::read(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) {
  checkOpen();
  if (byteOffset > capacityBytes_ || byteLength > capacityBytes_ - byteOffset) {
    throw RangeError("group read [" + std::to_string(byteOffset) + ", +" + std::to_string(byteLength) + ") is outside the group");
  }
  if (byteLength > 0 && target == nullptr) throw ArgumentError("group read target must not be null");
  bump(counters_.readCount);
  if (level_ != RaidLevel::Raid5) {
    readMirror(byteOffset, target, byteLength);
    return;
  }
  uint64_t done = 0;
  while (done < byteLength) {
    const RaidLocation location = map(byteOffset + done);
    const uint64_t n = std::min(location.runBytes, byteLength - done);
    readUnit(location, byteOffset + done, target + done, n);
    done += n;
  }
}

void RaidGroup::readMirror(uint64_t byteOffset, uint8_t* target, uint64_t byteLength) {
  if (byteLength == 0) return;
  for (uint32_t k = 0; k < memberCount_; k++) {
    if (!readable(k, byteOffset, byteLength)) continue;
    if (readMember(k, byteOffset, target, byteLength)) {
      if (k > 0) bump(counters_.degradedReadCount);
      return;
    }
  }
  dataLost("read", byteOffset, byteLength,
           level_ == RaidLevel::Single ? "the disk failed the read (no redundancy)" : "no mirror could be read");
}

void RaidGroup::readUnit(const RaidLocation& location, uint64_t groupByteOffset, uint8_t* target, uint64_t byteLength) {
  if (readable(location.member, location.diskByteOffset, byteLength) &&
      readMember(location.member, location.diskByteOffset, target, byteLength)) {
    return;
  }
  bump(counters_.degradedReadCount);
  if (!xorOthers(location.member, kNoMember, location.diskByteOffset, target, byteLength)) {
    dataLost("read", groupByteOffset, byteLength, "its member and another member of the stripe are unreadable (data lost)");
  }
}

void RaidGroup::write(uint64_t byteOffset, const uint8_t* source, uint64_t byteLength) {
  checkOpen();
  if (byteOffset > capacityBytes_ || byteLength > capacityBytes_ - byteOffset) {
    throw RangeError("group write [" + std::to_string(byteOffset) + ", +" + std::to_string(byteLength) + ") is outside the group");
  }
  bump(counters_.writeCount);
  if (level_ != RaidLevel::Raid5) {
    writeMirror(byteOffset, source, byteLength);
    return;
  }
  const uint64_t dataPerStripe = stripeUnitBytes_ * (memberCount_ - 1);
  uint64_t done = 0;
  while (done < byteLength) {
    const uint64_t at = byteOffset + done;
    const uint8_t* from = source != nullptr ? source + done : nullptr;
    if (at % dataPerStripe == 0 && byteLength - done >= dataPerStripe) {
      writeStripeFull(at / dataPerStripe, from);
      done += dataPerStripe;
      continue;
    }
    const RaidLocation location = map(at);
    const uint64_t n = std::min(location.runBytes, byteLength - done);
    writeUnitPartial(location, at, from, n);
    done += n;
  }
  if (failedMemberCount() > 1) dataLost("write", byteOffset, byteLength, "two members failed: the group lost its data");
}

void RaidGroup::writeMirror(uint64_t byteOffset, const uint8_t* source, uint64_t byteLength) {
  uint32_t stored = 0;
  for (uint32_t k = 0; k < memberCount_; k++) {
    if (writable(k) && writeMember(k, byteOffset, source, byteLength)) stored++;
  }
  if (stored == 0) {
    dataLost("write", byteOffset, byteLength,
             level_ == RaidLevel::Single ? "the disk failed the write (no redundancy)" : "every mirror failed");
  }
}

void RaidGroup::writeStripeFull(uint64_t stripeIndex, const uint8_t* source) {
  const uint64_t unit = stripeUnitBytes_;
  const uint64_t diskByteOffset = stripeIndex * unit;
  const uint32_t parity = memberCount_ - 1 - static_cast<uint32_t>(stripeIndex % memberCount_);
  if (source != nullptr) {
    std::memset(scratchB_.data(), 0, unit);
    for (uint32_t j = 0; j + 1 < memberCount_; j++) xorInto(scratchB_.data(), source + j * unit, unit);
  }
  for (uint32_t j = 0; j + 1 < memberCount_; j++) {
    const uint32_t member = (parity + 1 + j) % memberCount_;
    if (writable(member)) writeMember(member, diskByteOffset, source != nullptr ? source + j * unit : nullptr, unit);
  }
  if (writable(parity)) writeMember(parity, diskByteOffset, source != nullptr ? scratchB_.data() : nullptr, unit);
  bump(counters_.fullStripeWriteCount);
}

void RaidGroup::writeUnitPartial(const RaidLocation& location, uint64_t groupByteOffset, const uint8_t* source,
                                 uint64_t byteLength) {
  const uint32_t member = location.member;
  const uint32_t parity = location.parityMember;
  const uint64_t diskByteOffset = location.diskByteOffset;
  const uint8_t* data = source != nullptr ? source : zeros_.data();
  BM_ASSERT(byteLength <= stripeUnitBytes_);

  if (!writable(parity) || (stateOf(parity) == MemberState::Rebuilding && !readable(parity, diskByteOffset, byteLength))) {
    // No parity to keep (failed), or the rebuild will compute it (above the cursor).
    if (!writable(member)) dataLost("write", groupByteOffset, byteLength, "its member and the stripe's parity both failed");
    writeMember(member, diskByteOffset, source, byteLength);
    return;
  }
  bool haveParity = false;
  if (readable(member, diskByteOffset, byteLength) && readable(parity, diskByteOffset, byteLength) &&
      readMember(member, diskByteOffset, scratchA_.data(), byteLength) &&
      readMember(parity, diskByteOffset, scratchB_.data(), byteLength)) {
    xorInto(scratchB_.data(), scratchA_.data(), byteLength);
    xorInto(scratchB_.data(), data, byteLength);
    haveParity = true;
    bump(counters_.readModifyWriteCount);
  }
  if (!haveParity && xorOthers(member, parity, diskByteOffset, scratchB_.data(), byteLength)) {
    xorInto(scratchB_.data(), data, byteLength);
    haveParity = true;
    bump(counters_.reconstructWriteCount);
  }
  if (!haveParity) {
    // Neither the old data nor the rest of the stripe could be read: storing the data now would
    // leave a stripe whose parity lies. Nothing is written; the caller gets the error.
    dataLost("write", groupByteOffset, byteLength, "the stripe's parity cannot be computed (two members unreadable)");
  }
  if (writable(member)) writeMember(member, diskByteOffset, source, byteLength);
  writeMember(parity, diskByteOffset, source != nullptr || !allZero(scratchB_.data(), byteLength) ? scratchB_.data() : nullptr,
              byteLength);
}

RaidMemberInfo RaidGroup::member(uint32_t member) const {
  checkOpen();
  if (member >= memberCount_) throw RangeError("member index out of range");
  return RaidMemberInfo{member, stateOf(member), word64(memberEntry(member), kEntryDiskId).load(std::memory_order_relaxed),
                        cursorOf(member)};
}

const std::shared_ptr<Disk>& RaidGroup::disk(uint32_t member) const {
  checkOpen();
  if (member >= memberCount_) throw RangeError("member index out of range");
  return disks_[member];
}

RaidStats RaidGroup::stats() const noexcept {
  RaidStats stats{};
  stats.readCount = counters_.readCount.load(std::memory_order_relaxed);
  stats.writeCount = counters_.writeCount.load(std::memory_order_relaxed);
  stats.fullStripeWriteCount = counters_.fullStripeWriteCount.load(std::memory_order_relaxed);
  stats.readModifyWriteCount = counters_.readModifyWriteCount.load(std::memory_order_relaxed);
  stats.reconstructWriteCount = counters_.reconstructWriteCount.load(std::memory_order_relaxed);
  stats.degradedReadCount = counters_.degradedReadCount.load(std::memory_order_relaxed);
  stats.memberFailureCount = counters_.memberFailureCount.load(std::memory_order_relaxed);
  stats.dataLostCount = counters_.dataLostCount.load(std::memory_order_relaxed);
  stats.rebuildBytes = counters_.rebuildBytes.load(std::memory_order_relaxed);
  return stats;
}

void RaidGroup::close() noexcept {
  if (workDisk_) {
    for (uint32_t m = 0; m < memberCount_; m++) workDisk_->detach(&memberStores_[m]);
    workDisk_.reset();
  }
  metadata_.reset();
  header_ = nullptr;
  disks_.clear();
  sparingDisk_.reset();
}

}  // namespace bm
