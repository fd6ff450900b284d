// Notes on the design
// -------------------
// The native RaidGroup class over bm::RaidGroup. `new RaidGroup(kind, name, create, level,
// stripeUnitBytes, disks)` formats (create) or opens the group's metadata region; `disks` is an
// array of native Disk objects in member order. The group holds the core disks by shared_ptr, so
// a member outlives its JS object until the group closes; closing a member's JS Disk first makes
// the group's I/O on it fail with ERR_DISK_CLOSED (close the group first).
//
// Results cross as arrays: map() -> [member, diskByteOffset, runBytes, stripeIndex, parityMember
// (-1 below raid5)]; members() -> [[member, state, diskId, rebuildCursorBytes], ...] with states
// as numbers (bm::MemberState: 0 active, 1 failed, 2 rebuilding). Every call is synchronous and
// bounded: read/write by their length, rebuildStep by its maxBytes.
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "addon.hpp"
#include "disk_wrap.hpp"
#include "diversion_wrap.hpp"
#include "raid.hpp"
#include "region.hpp"
#include "volume_wrap.hpp"

namespace bmjs {
namespace {

constexpr size_t kStatsFieldCount = 9;
// One rebuild step is bounded: at most this many bytes per call.
constexpr uint64_t kMaxRebuildStepBytes = 64 * 1024 * 1024;

class RaidResource final : public Resource {
 public:
  RaidResource(std::shared_ptr<Registry> registry, std::shared_ptr<bm::RaidGroup> group, bm::RegionKind kind, std::string name)
      : Resource(std::move(registry)), core(std::move(group)), kind(kind), name(std::move(name)) {}
  ~RaidResource() override { releaseFromDestructor(); }
  std::shared_ptr<bm::RaidGroup> core;
  bm::RegionKind kind;
  std::string name;
  // Volumes laid on the group by this object, with the backing store each one uses.
  struct Attached {
    std::shared_ptr<bm::Volume> volume;
    std::unique_ptr<bm::GroupExtent> extent;
  };
  std::vector<Attached> attached;

  void detach(const bm::Volume* volume) noexcept {
    for (auto it = attached.begin(); it != attached.end(); ++it) {
      if (it->volume.get() == volume) {
        if (it->volume->backingStore() == it->extent.get()) it->volume->setBackingStore(nullptr);
        attached.erase(it);
        return;
      }
    }
  }

 protected:
  void releaseCore() noexcept override {
    // A volume must never keep a pointer to an extent that is gone.
    for (Attached& entry : attached) {
      if (entry.volume->backingStore() == entry.extent.get()) entry.volume->setBackingStore(nullptr);
    }
    attached.clear();
    if (core) core->close();
  }
};

class RaidWrap final : public Napi::ObjectWrap<RaidWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d5261'69643031ULL, 0x1d7e40c9'a5b38f26ULL};
  static constexpr const char* kClassName = "RaidGroup";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<RaidWrap>(
        env, "RaidGroup",
        {
            prototypeMethod<RaidWrap, &RaidWrap::info>(env, "info"),
            prototypeMethod<RaidWrap, &RaidWrap::map>(env, "map"),
            prototypeMethod<RaidWrap, &RaidWrap::divertDisks>(env, "divertDisks"),
            prototypeMethod<RaidWrap, &RaidWrap::divertToBackup>(env, "divertToBackup"),
            prototypeMethod<RaidWrap, &RaidWrap::read>(env, "read"),
            prototypeMethod<RaidWrap, &RaidWrap::write>(env, "write"),
            prototypeMethod<RaidWrap, &RaidWrap::writeZeroes>(env, "writeZeroes"),
            prototypeMethod<RaidWrap, &RaidWrap::members>(env, "members"),
            prototypeMethod<RaidWrap, &RaidWrap::failMember>(env, "failMember"),
            prototypeMethod<RaidWrap, &RaidWrap::startRebuild>(env, "startRebuild"),
            prototypeMethod<RaidWrap, &RaidWrap::rebuildStep>(env, "rebuildStep"),
            prototypeMethod<RaidWrap, &RaidWrap::startSparing>(env, "startSparing"),
            prototypeMethod<RaidWrap, &RaidWrap::resumeSparing>(env, "resumeSparing"),
            prototypeMethod<RaidWrap, &RaidWrap::sparingStep>(env, "sparingStep"),
            prototypeMethod<RaidWrap, &RaidWrap::sparing>(env, "sparing"),
            prototypeMethod<RaidWrap, &RaidWrap::cancelSparing>(env, "cancelSparing"),
            prototypeMethod<RaidWrap, &RaidWrap::stats>(env, "stats"),
            prototypeMethod<RaidWrap, &RaidWrap::allocateExtent>(env, "allocateExtent"),
            prototypeMethod<RaidWrap, &RaidWrap::freeExtent>(env, "freeExtent"),
            prototypeMethod<RaidWrap, &RaidWrap::extents>(env, "extents"),
            prototypeMethod<RaidWrap, &RaidWrap::attachVolume>(env, "attachVolume"),
            prototypeMethod<RaidWrap, &RaidWrap::detachVolume>(env, "detachVolume"),
            prototypeMethod<RaidWrap, &RaidWrap::divertVolume>(env, "divertVolume"),
            prototypeMethod<RaidWrap, &RaidWrap::destroy>(env, "destroy"),
            prototypeMethod<RaidWrap, &RaidWrap::close>(env, "close"),
        });
    exports.Set("RaidGroup", constructor);
    exports.Set("MAX_RAID_MEMBERS", Napi::Number::New(env, bm::RaidGroup::kMaxMembers));
    exports.Set("MAX_RAID_STRIPE_UNIT_BYTES", Napi::Number::New(env, static_cast<double>(bm::RaidGroup::kMaxStripeUnitBytes)));
  }

  explicit RaidWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RaidWrap>(info) {
    napi_env env = info.Env();
    try {
      const auto kind = static_cast<bm::RegionKind>(argIndexAtMost(env, arg(info, 0), "kind", 2));
      std::string name = argString(env, arg(info, 1), "name");
      const bool create = argBool(env, arg(info, 2), "create");
      bm::RaidOptions options;
      options.level = static_cast<bm::RaidLevel>(argIndexAtMost(env, arg(info, 3), "level", 2));
      options.stripeUnitBytes = argIndex(env, arg(info, 4), "stripeUnitBytes");
      Napi::Value disksValue = info[5];
      if (!disksValue.IsArray()) throwTypeError(env, "disks must be an array of native Disk objects");
      Napi::Array array = disksValue.As<Napi::Array>();
      if (array.Length() == 0 || array.Length() > bm::RaidGroup::kMaxMembers) throwRangeError(env, "a group has 1 to 16 disks");
      std::vector<std::shared_ptr<bm::Disk>> disks;
      for (uint32_t i = 0; i < array.Length(); i++) disks.push_back(diskFromObject(env, array.Get(i), "disks[i]"));
      bm::RegionOptions regionOptions;
      regionOptions.kind = kind;
      regionOptions.name = name;
      regionOptions.byteLength = bm::RaidGroup::kMetadataBytes;
      std::shared_ptr<bm::RaidGroup> group;
      if (create) {
        regionOptions.create = true;
        std::shared_ptr<bm::Region> region = bm::Region::open(regionOptions);
        try {
          group = bm::RaidGroup::create(region, std::move(disks), options);
        } catch (...) {
          region->close();
          if (kind != bm::RegionKind::Anonymous) bm::Region::unlink(kind, name);
          throw;
        }
      } else {
        if (kind == bm::RegionKind::Anonymous) throwTypeError(env, "an anonymous group cannot be opened");
        regionOptions.create = false;
        regionOptions.open = true;
        group = bm::RaidGroup::open(bm::Region::open(regionOptions), std::move(disks));
      }
      resource_ = std::make_shared<RaidResource>(Addon::of(env).registry, std::move(group), kind, std::move(name));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<RaidWrap>(info);
  }

  ~RaidWrap() override {
    if (resource_) resource_->requestClose();
  }

 private:
  bm::RaidGroup& core() const {
    if (resource_->closed()) throwClosed(bm::Code::ERR_RAID_CLOSED, "RAID group");
    return *resource_->core;
  }

  // [level, memberCount, stripeUnitBytes, memberBytes, capacityBytes, kind, region name]
  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bm::RaidGroup& group = core();
    Napi::Array result = Napi::Array::New(env, 7);
    result.Set(0u, Napi::Number::New(env, static_cast<double>(group.level())));
    result.Set(1u, Napi::Number::New(env, group.memberCount()));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(group.stripeUnitBytes())));
    result.Set(3u, Napi::Number::New(env, static_cast<double>(group.memberBytes())));
    result.Set(4u, Napi::Number::New(env, static_cast<double>(group.capacityBytes())));
    result.Set(5u, Napi::Number::New(env, static_cast<double>(resource_->kind)));
    result.Set(6u, Napi::String::New(env, resource_->name));
    return result;
  }

  Napi::Value map(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bm::RaidLocation location = core().map(argIndex(env, arg(info, 0), "byteOffset"));
    Napi::Array result = Napi::Array::New(env, 5);
    result.Set(0u, Napi::Number::New(env, location.member));
    result.Set(1u, Napi::Number::New(env, static_cast<double>(location.diskByteOffset)));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(location.runBytes)));
    result.Set(3u, Napi::Number::New(env, static_cast<double>(location.stripeIndex)));
    result.Set(4u, Napi::Number::New(env, location.parityMember == UINT32_MAX ? -1.0 : location.parityMember));
    return result;
  }

  Napi::Value read(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const Bytes target = argBytes(env, arg(info, 1), "target");
    core().read(byteOffset, target.data, target.byteLength);
    return info.Env().Undefined();
  }

  Napi::Value write(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const Bytes source = argBytes(env, arg(info, 1), "source");
    core().write(byteOffset, source.data, source.byteLength);
    return info.Env().Undefined();
  }

  Napi::Value writeZeroes(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    core().write(byteOffset, nullptr, byteLength);
    return info.Env().Undefined();
  }

  Napi::Value members(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bm::RaidGroup& group = core();
    Napi::Array result = Napi::Array::New(env, group.memberCount());
    for (uint32_t i = 0; i < group.memberCount(); i++) {
      const bm::RaidMemberInfo member = group.member(i);
      Napi::Array entry = Napi::Array::New(env, 4);
      entry.Set(0u, Napi::Number::New(env, member.member));
      entry.Set(1u, Napi::Number::New(env, static_cast<double>(member.state)));
      entry.Set(2u, Napi::BigInt::New(env, member.diskId));
      entry.Set(3u, Napi::Number::New(env, static_cast<double>(member.rebuildCursorBytes)));
      result.Set(i, entry);
    }
    return result;
  }

  uint32_t argMember(napi_env env, napi_value value) {
    return static_cast<uint32_t>(argIndexAtMost(env, value, "member", core().memberCount() - 1));
  }

  Napi::Value failMember(const Napi::CallbackInfo& info) {
    core().failMember(argMember(info.Env(), arg(info, 0)));
    return info.Env().Undefined();
  }

  Napi::Value startRebuild(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint32_t member = argMember(env, arg(info, 0));
    core().startRebuild(member, diskFromObject(env, arg(info, 1), "disk"));
    return info.Env().Undefined();
  }

  Napi::Value rebuildStep(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t maxBytes = argIndexAtMost(env, arg(info, 0), "maxBytes", kMaxRebuildStepBytes);
    return Napi::Number::New(env, static_cast<double>(core().rebuildStep(maxBytes)));
  }

  // Sparing (raid_sparing.cpp): copy of an active member onto a spare, then the swap.
  Napi::Value startSparing(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint32_t member = argMember(env, arg(info, 0));
    core().startSparing(member, diskFromObject(env, arg(info, 1), "disk"));
    return info.Env().Undefined();
  }

  Napi::Value resumeSparing(const Napi::CallbackInfo& info) {
    core().resumeSparing(diskFromObject(info.Env(), arg(info, 0), "disk"));
    return info.Env().Undefined();
  }

  Napi::Value sparingStep(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t maxBytes = argIndexAtMost(env, arg(info, 0), "maxBytes", kMaxRebuildStepBytes);
    return Napi::Number::New(env, static_cast<double>(core().sparingStep(maxBytes)));
  }

  // [member (-1: none), diskId (bigint), cursorBytes, attached]
  Napi::Value sparing(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bm::RaidGroup::SparingInfo s = core().sparing();
    Napi::Array result = Napi::Array::New(env, 4);
    result.Set(0u, Napi::Number::New(env, s.member == UINT32_MAX ? -1.0 : static_cast<double>(s.member)));
    result.Set(1u, Napi::BigInt::New(env, s.diskId));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(s.cursorBytes)));
    result.Set(3u, Napi::Boolean::New(env, s.attached));
    return result;
  }

  Napi::Value cancelSparing(const Napi::CallbackInfo& info) {
    core().cancelSparing();
    return info.Env().Undefined();
  }

  // Float64Array of bm::RaidStats in declaration order.
  Napi::Value stats(const Napi::CallbackInfo& info) {
    const bm::RaidStats stats = core().stats();
    const uint64_t values[kStatsFieldCount] = {stats.readCount,           stats.writeCount,         stats.fullStripeWriteCount,
                                               stats.readModifyWriteCount, stats.reconstructWriteCount, stats.degradedReadCount,
                                               stats.memberFailureCount,   stats.dataLostCount,      stats.rebuildBytes};
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), kStatsFieldCount);
    for (size_t i = 0; i < kStatsFieldCount; i++) result[i] = static_cast<double>(values[i]);
    return result;
  }

  static Napi::Array extentArray(Napi::Env env, const bm::RaidExtent& extent) {
    Napi::Array result = Napi::Array::New(env, 3);
    result.Set(0u, Napi::String::New(env, extent.name));
    result.Set(1u, Napi::Number::New(env, static_cast<double>(extent.groupByteOffset)));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(extent.byteLength)));
    return result;
  }

  Napi::Value allocateExtent(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const std::string name = argString(env, arg(info, 0), "name");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    return extentArray(info.Env(), core().allocateExtent(name, byteLength));
  }

  Napi::Value freeExtent(const Napi::CallbackInfo& info) {
    const std::string name = argString(info.Env(), arg(info, 0), "name");
    for (const auto& entry : resource_->attached) {
      if (entry.extent->groupByteOffset() == core().findExtent(name).groupByteOffset && entry.volume->backingStore() == entry.extent.get()) {
        throw bm::Error(bm::Code::ERR_RAID_MEMBER_STATE, "extent '" + name + "' has a volume attached: detach it first");
      }
    }
    return Napi::Boolean::New(info.Env(), core().freeExtent(name));
  }

  Napi::Value extents(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::vector<bm::RaidExtent> extents = core().extents();
    Napi::Array result = Napi::Array::New(env, extents.size());
    for (uint32_t i = 0; i < extents.size(); i++) result.Set(i, extentArray(env, extents[i]));
    return result;
  }

  // attachVolume(volume, extentName): the volume's step 4 and reads go through the extent.
  Napi::Value attachVolume(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    std::shared_ptr<bm::Volume> volume = volumeFromObject(env, arg(info, 0), "volume");
    const std::string name = argString(env, arg(info, 1), "extentName");
    const bm::RaidExtent extent = core().findExtent(name);
    if (volume->capacityBytes() > extent.byteLength) throwRangeError(env, "the volume is larger than extent '" + name + "'");
    if (volume->backingStore() != nullptr) throwTypeError(env, "the volume object is laid on a group already");
    auto store = std::make_unique<bm::GroupExtent>(resource_->core, extent.groupByteOffset, volume->capacityBytes());
    volume->setBackingStore(store.get());
    resource_->attached.push_back({std::move(volume), std::move(store)});
    return info.Env().Undefined();
  }

  // divertVolume(volume, work | null, mainKey?): lays a work volume (diversion_wrap.cpp) behind the
  // volume's extent, registering the volume as one of its mains; null lifts it. Returns the main
  // index (-1 for null).
  Napi::Value divertVolume(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    core();
    std::shared_ptr<bm::Volume> volume = volumeFromObject(env, arg(info, 0), "volume");
    for (auto& entry : resource_->attached) {
      if (entry.volume != volume) continue;
      if (Napi::Value(env, arg(info, 1)).IsNull()) {
        entry.extent->setWorkVolume(nullptr, 0);
        return Napi::Number::New(env, -1);
      }
      std::shared_ptr<bm::WorkVolume> work = workVolumeFromObject(env, arg(info, 1), "work");
      // The main's key in the work volume: the volume id, or a caller's stable key (a bigint:
      // a controller's volume may be re-created with a new id after a restart).
      uint64_t key = volume->volumeId();
      Napi::Value keyValue(env, arg(info, 2));
      if (keyValue.IsBigInt()) {
        bool lossless = false;
        key = keyValue.As<Napi::BigInt>().Uint64Value(&lossless);
        if (!lossless || key == 0) throwRangeError(env, "mainKey must be a bigint from 1 to 2^64-1");
      }
      const uint32_t main = work->registerMain(key);
      entry.extent->setWorkVolume(std::move(work), main);
      return Napi::Number::New(env, main);
    }
    throwTypeError(env, "the volume is not laid on this group");
  }

  // divertDisks(work | null, mainKeys: bigint[]): diversion variant (c): lays a work disk (a
  // WorkVolume with a data disk) under every member's I/O, member m registered with
  // mainKeys[m]; null lifts it. Returns the members' main indexes ([] for null).
  Napi::Value divertDisks(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    bm::RaidGroup& group = core();
    if (Napi::Value(env, arg(info, 0)).IsNull()) {
      group.setWorkDisk(nullptr, {});
      return Napi::Array::New(env, 0);
    }
    std::shared_ptr<bm::WorkVolume> work = workVolumeFromObject(env, arg(info, 0), "work");
    Napi::Value keysValue(env, arg(info, 1));
    if (!keysValue.IsArray()) throwTypeError(env, "mainKeys must be an array of bigints");
    Napi::Array keysArray = keysValue.As<Napi::Array>();
    std::vector<uint64_t> keys;
    for (uint32_t i = 0; i < keysArray.Length(); i++) {
      Napi::Value key = keysArray.Get(i);
      bool lossless = false;
      const uint64_t value = key.IsBigInt() ? key.As<Napi::BigInt>().Uint64Value(&lossless) : 0;
      if (!lossless || value == 0) throwRangeError(env, "mainKeys must be bigints from 1 to 2^64-1");
      keys.push_back(value);
    }
    group.setWorkDisk(std::move(work), keys);
    Napi::Array result = Napi::Array::New(env, group.memberCount());
    for (uint32_t m = 0; m < group.memberCount(); m++) result.Set(m, Napi::Number::New(env, group.workDiskMain(m)));
    return result;
  }

  // divertToBackup(volume, backup | null, secondaryGroup?, extentName?): diversion variant (a):
  // the volume's group share goes through a backup volume whose secondary is the extent
  // `extentName` of `secondaryGroup` (another RaidGroup object); null lifts it.
  Napi::Value divertToBackup(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    core();
    std::shared_ptr<bm::Volume> volume = volumeFromObject(env, arg(info, 0), "volume");
    for (auto& entry : resource_->attached) {
      if (entry.volume != volume) continue;
      if (Napi::Value(env, arg(info, 1)).IsNull()) {
        entry.extent->setBackup(nullptr);
        return info.Env().Undefined();
      }
      std::shared_ptr<bm::BackupVolume> backup = backupVolumeFromObject(env, arg(info, 1), "backup");
      RaidWrap* other = unwrapArgument<RaidWrap>(env, arg(info, 2), "secondaryGroup");
      if (other->resource_->closed()) throwClosed(bm::Code::ERR_RAID_CLOSED, "RAID group");
      if (other->resource_ == resource_) throwRangeError(env, "the secondary must be in another group");
      const bm::RaidExtent extent = other->resource_->core->findExtent(argString(env, arg(info, 3), "extentName"));
      if (extent.byteLength < backup->byteLength()) throwRangeError(env, "the secondary extent is smaller than the backup volume");
      if (backup->byteLength() != volume->capacityBytes()) throwRangeError(env, "the backup volume must be as long as the volume");
      if (entry.extent->backup() && entry.extent->backup() != backup && entry.extent->backup()->state() != bm::WorkState::Unused) {
        throw bm::Error(bm::Code::ERR_DIVERSION_STATE, "the volume is backed up to another backup volume in use (copy it back and lift it first)");
      }
      if (backup->hasSecondary() && backup->state() != bm::WorkState::Unused && entry.extent->backup() != backup) {
        throw bm::Error(bm::Code::ERR_DIVERSION_STATE, "the backup volume is in use behind another volume");
      }
      backup->setSecondary(std::make_shared<bm::GroupExtent>(other->resource_->core, extent.groupByteOffset, backup->byteLength()));
      entry.extent->setBackup(std::move(backup));
      return info.Env().Undefined();
    }
    throwTypeError(env, "the volume is not laid on this group");
  }

  Napi::Value detachVolume(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    core();
    std::shared_ptr<bm::Volume> volume = volumeFromObject(env, arg(info, 0), "volume");
    resource_->detach(volume.get());
    return info.Env().Undefined();
  }

  Napi::Value destroy(const Napi::CallbackInfo& info) {
    core();
    resource_->requestClose();
    if (resource_->kind != bm::RegionKind::Anonymous) bm::Region::unlink(resource_->kind, resource_->name);
    return info.Env().Undefined();
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    resource_->requestClose();
    return info.Env().Undefined();
  }

  std::shared_ptr<RaidResource> resource_;
};

}  // namespace

void initRaid(Napi::Env env, Napi::Object exports) { RaidWrap::init(env, exports); }

}  // namespace bmjs
