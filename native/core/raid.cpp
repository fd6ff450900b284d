#include "raid.hpp"

#include <algorithm>
#include <cstring>
#include <string>

#include "byte_order.hpp"
#include "errors.hpp"

namespace bm {

namespace {

constexpr char kMagic[8] = {'B', 'M', 'R', 'A', 'I', 'D', '0', '1'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kVersionOffset = 8;
constexpr uint64_t kLevelOffset = 12;
constexpr uint64_t kMemberCountOffset = 16;
constexpr uint64_t kStripeUnitOffset = 24;
constexpr uint64_t kMemberBytesOffset = 32;
constexpr uint64_t kCapacityOffset = 40;
constexpr uint64_t kMemberTableOffset = 256;
constexpr uint64_t kMemberEntryBytes = 32;
constexpr uint64_t kEntryDiskId = 0;
constexpr uint64_t kEntryState = 8;
constexpr uint64_t kEntryCursor = 16;
constexpr uint32_t kNoMember = UINT32_MAX;
// Extent table: kMaxExtents entries {used u32, pad u32, offset u64, length u64, name[40]}.
constexpr uint64_t kExtentTableOffset = 1024;
constexpr uint64_t kExtentEntryBytes = 64;
constexpr uint64_t kExtentOffset = 8;
constexpr uint64_t kExtentLength = 16;
constexpr uint64_t kExtentName = 24;
// Chunk of a mirror rebuild (raid5 rebuilds one stripe unit at a time).
constexpr uint64_t kMirrorChunkBytes = 64 * 1024;

static_assert(kMemberTableOffset + RaidGroup::kMaxMembers * kMemberEntryBytes <= kExtentTableOffset);
static_assert(kExtentTableOffset + RaidGroup::kMaxExtents * kExtentEntryBytes <= RaidGroup::kMetadataBytes);
static_assert(RaidGroup::kMaxExtentNameBytes < kExtentEntryBytes - kExtentName);

std::atomic_ref<uint32_t> word32(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint32_t>(*reinterpret_cast<uint32_t*>(base + byteOffset));
}

std::atomic_ref<uint64_t> word64(uint8_t* base, uint64_t byteOffset) noexcept {
  return std::atomic_ref<uint64_t>(*reinterpret_cast<uint64_t*>(base + byteOffset));
}

void xorInto(uint8_t* target, const uint8_t* source, uint64_t byteLength) noexcept {
  // A plain loop: the compiler vectorizes it at -O3.
  for (uint64_t i = 0; i < byteLength; i++) target[i] ^= source[i];
}

bool allZero(const uint8_t* bytes, uint64_t byteLength) noexcept {
  for (uint64_t i = 0; i < byteLength; i++) {
    if (bytes[i] != 0) return false;
  }
  return true;
}

void bump(std::atomic<uint64_t>& counter, uint64_t value = 1) noexcept {
  counter.store(counter.load(std::memory_order_relaxed) + value, std::memory_order_relaxed);
}

const char* levelName(RaidLevel level) noexcept {
  switch (level) {
    case RaidLevel::Single: return "single";
    case RaidLevel::Raid1: return "raid1";
    default: return "raid5";
  }
}

void checkMemberCount(RaidLevel level, size_t count) {
  const bool ok = (level == RaidLevel::Single && count == 1) ||
                  (level == RaidLevel::Raid1 && count >= 2 && count <= RaidGroup::kMaxMembers) ||
                  (level == RaidLevel::Raid5 && count >= 3 && count <= RaidGroup::kMaxMembers);
  if (!ok) {
    throw RangeError(std::string(levelName(level)) + " takes " +
                     (level == RaidLevel::Single ? "exactly 1 disk" : level == RaidLevel::Raid1 ? "2 to 16 disks" : "3 to 16 disks") +
                     ", not " + std::to_string(count));
  }
}

}  // namespace

std::unique_ptr<RaidGroup> RaidGroup::create(std::shared_ptr<Region> metadata, std::vector<std::shared_ptr<Disk>> disks,
                                             const RaidOptions& options) {
  if (!metadata || metadata->closed()) throw Error(Code::ERR_REGION_CLOSED, "group metadata region is closed");
  if (metadata->byteLength() < kMetadataBytes) throw Error(Code::ERR_REGION_TOO_SMALL, "group metadata region is smaller than 4096 bytes");
  if (static_cast<uint32_t>(options.level) > static_cast<uint32_t>(RaidLevel::Raid5)) throw RangeError("unknown RAID level");
  checkMemberCount(options.level, disks.size());
  uint64_t minimumCapacity = UINT64_MAX;
  uint32_t sectorSize = 0;
  for (size_t i = 0; i < disks.size(); i++) {
    if (!disks[i] || disks[i]->closed()) throw Error(Code::ERR_DISK_CLOSED, "member disk " + std::to_string(i) + " is closed");
    for (size_t j = 0; j < i; j++) {
      if (disks[j]->diskId() == disks[i]->diskId()) throw RangeError("a disk cannot be two members of a group");
    }
    minimumCapacity = std::min(minimumCapacity, disks[i]->capacityBytes());
    sectorSize = std::max(sectorSize, disks[i]->sectorSize());
  }
  std::unique_ptr<RaidGroup> group(new RaidGroup());
  group->level_ = options.level;
  group->memberCount_ = static_cast<uint32_t>(disks.size());
  if (options.level == RaidLevel::Raid5) {
    const uint64_t unit = options.stripeUnitBytes;
    if (unit < sectorSize || unit > kMaxStripeUnitBytes || (unit & (unit - 1)) != 0) {
      throw RangeError("stripeUnitBytes must be a power of two from the disks' sector size (" + std::to_string(sectorSize) +
                       ") to 1 MiB");
    }
    if (minimumCapacity < unit) throw RangeError("the smallest disk holds less than one stripe unit");
    group->stripeUnitBytes_ = unit;
    group->memberBytes_ = minimumCapacity / unit * unit;
    group->capacityBytes_ = group->memberBytes_ * (group->memberCount_ - 1);
  } else {
    group->stripeUnitBytes_ = 0;
    group->memberBytes_ = minimumCapacity / sectorSize * sectorSize;
    group->capacityBytes_ = group->memberBytes_;
  }
  uint8_t* header = metadata->data();
  std::memset(header, 0, kMetadataBytes);
  writeLittleEndian<uint32_t>(header + kVersionOffset, kVersion);
  writeLittleEndian<uint32_t>(header + kLevelOffset, static_cast<uint32_t>(group->level_));
  writeLittleEndian<uint32_t>(header + kMemberCountOffset, group->memberCount_);
  writeLittleEndian<uint64_t>(header + kStripeUnitOffset, group->stripeUnitBytes_);
  writeLittleEndian<uint64_t>(header + kMemberBytesOffset, group->memberBytes_);
  writeLittleEndian<uint64_t>(header + kCapacityOffset, group->capacityBytes_);
  for (uint32_t i = 0; i < group->memberCount_; i++) {
    uint8_t* entry = header + kMemberTableOffset + i * kMemberEntryBytes;
    word64(entry, kEntryDiskId).store(disks[i]->diskId(), std::memory_order_relaxed);
    word32(entry, kEntryState).store(static_cast<uint32_t>(MemberState::Active), std::memory_order_relaxed);
  }
  std::atomic_thread_fence(std::memory_order_release);
  std::memcpy(header, kMagic, sizeof kMagic);
  group->metadata_ = std::move(metadata);
  group->header_ = header;
  group->disks_ = std::move(disks);
  group->setup();
  return group;
}

std::unique_ptr<RaidGroup> RaidGroup::open(std::shared_ptr<Region> metadata, std::vector<std::shared_ptr<Disk>> disks) {
  if (!metadata || metadata->closed()) throw Error(Code::ERR_REGION_CLOSED, "group metadata region is closed");
  if (metadata->byteLength() < kMetadataBytes) throw Error(Code::ERR_RAID_BAD_HEADER, "region too small for group metadata");
  uint8_t* header = metadata->data();
  if (std::memcmp(header, kMagic, sizeof kMagic) != 0) throw Error(Code::ERR_RAID_BAD_HEADER, "region is not group metadata (magic)");
  if (readLittleEndian<uint32_t>(header + kVersionOffset) != kVersion) throw Error(Code::ERR_RAID_BAD_HEADER, "group metadata version is not 1");
  const uint32_t level = readLittleEndian<uint32_t>(header + kLevelOffset);
  const uint32_t memberCount = readLittleEndian<uint32_t>(header + kMemberCountOffset);
  if (level > static_cast<uint32_t>(RaidLevel::Raid5) || memberCount == 0 || memberCount > kMaxMembers) {
    throw Error(Code::ERR_RAID_BAD_HEADER, "group metadata is damaged");
  }
  if (disks.size() != memberCount) {
    throw Error(Code::ERR_RAID_BAD_HEADER, "the group has " + std::to_string(memberCount) + " members, " +
                                               std::to_string(disks.size()) + " disks were given");
  }
  std::unique_ptr<RaidGroup> group(new RaidGroup());
  group->level_ = static_cast<RaidLevel>(level);
  group->memberCount_ = memberCount;
  group->stripeUnitBytes_ = readLittleEndian<uint64_t>(header + kStripeUnitOffset);
  group->memberBytes_ = readLittleEndian<uint64_t>(header + kMemberBytesOffset);
  group->capacityBytes_ = readLittleEndian<uint64_t>(header + kCapacityOffset);
  for (uint32_t i = 0; i < memberCount; i++) {
    if (!disks[i] || disks[i]->closed()) throw Error(Code::ERR_DISK_CLOSED, "member disk " + std::to_string(i) + " is closed");
    uint8_t* entry = header + kMemberTableOffset + i * kMemberEntryBytes;
    if (word64(entry, kEntryDiskId).load(std::memory_order_relaxed) != disks[i]->diskId()) {
      throw Error(Code::ERR_RAID_BAD_HEADER, "disk " + std::to_string(i) + " is not the group's member " + std::to_string(i));
    }
    if (disks[i]->capacityBytes() < group->memberBytes_) throw Error(Code::ERR_RAID_BAD_HEADER, "a member disk is too small");
    if (word32(entry, kEntryState).load(std::memory_order_relaxed) > static_cast<uint32_t>(MemberState::Rebuilding)) {
      throw Error(Code::ERR_RAID_BAD_HEADER, "a member state is damaged");
    }
  }
  group->metadata_ = std::move(metadata);
  group->header_ = header;
  group->disks_ = std::move(disks);
  group->setup();
  group->settleSparing();
  return group;
}

void RaidGroup::setup() {
  const uint64_t scratchBytes = level_ == RaidLevel::Raid5 ? stripeUnitBytes_ : kMirrorChunkBytes;
  scratchA_.assign(scratchBytes, 0);
  scratchB_.assign(scratchBytes, 0);
  scratchC_.assign(scratchBytes, 0);
  zeros_.assign(scratchBytes, 0);
}

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

uint64_t RaidGroup::extentAlignmentBytes() const noexcept {
  return level_ == RaidLevel::Raid5 ? stripeUnitBytes_ * (memberCount_ - 1) : 4096;
}

std::vector<RaidExtent> RaidGroup::extents() const {
  checkOpen();
  std::vector<RaidExtent> result;
  for (uint32_t i = 0; i < kMaxExtents; i++) {
    uint8_t* entry = header_ + kExtentTableOffset + i * kExtentEntryBytes;
    if (word32(entry, 0).load(std::memory_order_acquire) == 0) continue;
    const char* name = reinterpret_cast<const char*>(entry + kExtentName);
    result.push_back(RaidExtent{std::string(name, strnlen(name, kMaxExtentNameBytes)),
                                word64(entry, kExtentOffset).load(std::memory_order_relaxed),
                                word64(entry, kExtentLength).load(std::memory_order_relaxed)});
  }
  std::sort(result.begin(), result.end(),
            [](const RaidExtent& a, const RaidExtent& b) { return a.groupByteOffset < b.groupByteOffset; });
  return result;
}

RaidExtent RaidGroup::findExtent(const std::string& name) const {
  for (const RaidExtent& extent : extents()) {
    if (extent.name == name) return extent;
  }
  throw Error(Code::ERR_RAID_EXTENT_NOT_FOUND, "the group has no volume extent named '" + name + "'");
}

RaidExtent RaidGroup::allocateExtent(const std::string& name, uint64_t byteLength) {
  checkOpen();
  if (name.empty() || name.size() > kMaxExtentNameBytes) throw RangeError("extent names are 1..39 bytes");
  if (byteLength == 0) throw RangeError("an extent needs at least one byte");
  const std::vector<RaidExtent> used = extents();
  for (const RaidExtent& extent : used) {
    if (extent.name == name) throw Error(Code::ERR_RAID_EXTENT_EXISTS, "the group has a volume extent named '" + name + "'");
  }
  const uint64_t alignment = extentAlignmentBytes();
  const uint64_t length = (byteLength + alignment - 1) / alignment * alignment;
  uint64_t at = 0;
  bool found = false;
  for (size_t i = 0; i <= used.size(); i++) {
    const uint64_t gapEnd = i < used.size() ? used[i].groupByteOffset : capacityBytes_ / alignment * alignment;
    if (gapEnd >= at && gapEnd - at >= length) {
      found = true;
      break;
    }
    if (i < used.size()) at = used[i].groupByteOffset + used[i].byteLength;
  }
  uint8_t* free = nullptr;
  for (uint32_t i = 0; i < kMaxExtents && free == nullptr; i++) {
    uint8_t* entry = header_ + kExtentTableOffset + i * kExtentEntryBytes;
    if (word32(entry, 0).load(std::memory_order_relaxed) == 0) free = entry;
  }
  if (!found || free == nullptr) {
    throw Error(Code::ERR_RAID_NO_SPACE, std::string("no unused space of ") + std::to_string(length) + " bytes in the group" +
                                             (free == nullptr ? " (the extent table is full)" : ""));
  }
  word64(free, kExtentOffset).store(at, std::memory_order_relaxed);
  word64(free, kExtentLength).store(length, std::memory_order_relaxed);
  std::memset(free + kExtentName, 0, kExtentEntryBytes - kExtentName);
  std::memcpy(free + kExtentName, name.data(), name.size());
  word32(free, 0).store(1, std::memory_order_release);
  return RaidExtent{name, at, length};
}

bool RaidGroup::freeExtent(const std::string& name) {
  checkOpen();
  for (uint32_t i = 0; i < kMaxExtents; i++) {
    uint8_t* entry = header_ + kExtentTableOffset + i * kExtentEntryBytes;
    if (word32(entry, 0).load(std::memory_order_acquire) == 0) continue;
    const char* entryName = reinterpret_cast<const char*>(entry + kExtentName);
    if (std::string(entryName, strnlen(entryName, kMaxExtentNameBytes)) == name) {
      word32(entry, 0).store(0, std::memory_order_release);
      return true;
    }
  }
  return false;
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
