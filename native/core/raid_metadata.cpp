// Notes on the design
// -------------------
// The metadata region of a RaidGroup (raid.hpp): create formats it (geometry, member table with
// each member's diskId, the magic written last), open checks it and that the disks given are the
// group's members in order, and the extent table keeps the volume extents laid on the group:
// allocateExtent takes the first gap that fits, rounded up to extentAlignmentBytes (a full
// stripe for raid5, 4096 otherwise), and publishes an entry by its used word, written last.
#include <algorithm>
#include <cstring>
#include <string>

#include "byte_order.hpp"
#include "errors.hpp"
#include "raid.hpp"
#include "raid_internal.hpp"

namespace bm {

using namespace raid_internal;

namespace {

constexpr char kMagic[8] = {'B', 'M', 'R', 'A', 'I', 'D', '0', '1'};
constexpr uint32_t kVersion = 1;
constexpr uint64_t kVersionOffset = 8;
constexpr uint64_t kLevelOffset = 12;
constexpr uint64_t kMemberCountOffset = 16;
constexpr uint64_t kStripeUnitOffset = 24;
constexpr uint64_t kMemberBytesOffset = 32;
constexpr uint64_t kCapacityOffset = 40;
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

}  // namespace bm
