// Notes on the design
// -------------------
// The native WorkVolume class (diversion variant (b), native/core/diversion.hpp): created on or
// opened from a region (anonymous, or shared: blockmirror.work.<name>, so the maps survive a
// SIGKILL). A plain shared_ptr holds the core: a GroupExtent diverting through it holds another,
// so closing the JS object never frees what a volume's write path still uses. RaidGroup's
// divertVolume(volume, work) (raid_wrap.cpp) lays a work volume behind a volume's extent;
// workVolumeFromObject lets it take the JS object.
//   new WorkVolume(kind, name, create, slotCount, slotBytes, dataDisk?)  (a native Disk: variant
//              (c), the slots live on that disk; opening needs the same disk)
//   info() -> [slotCount, slotBytes, state (0 unused, 1 diverting, 2 full, 3 copying-back),
//              terminal, copyBackCursor, mainIds (bigint[])]
//   bitmap(maxSlots) -> Uint8Array of 0/1 for slots 1..min(maxSlots, slotCount)
//   lookup(main, block) -> slot (0: not diverted); start(); beginCopyBack();
//   copyBackStep(maxSlots) -> slots walked; stats() -> Float64Array(6); close()
//   entries(max) -> Float64Array of [main, block, slot] x n: the live map in arrival order
// The native BackupVolume class (variant (a), native/core/backup_diversion.hpp), the same way:
//   new BackupVolume(kind, name, create, byteLength, blockBytes)
//   info() -> [byteLength, blockBytes, state (0 unused, 1 diverting, 3 copying-back), divertedBlocks, copyBackCursor]
//   bitmap(maxBlocks) -> Uint8Array of 0/1; start(); beginCopyBack(); copyBackStep(maxBlocks);
//   stats() -> Float64Array(4): divertedWrites, divertedReads, fallbackWrites, copiedBackBlocks; close()
#include <napi.h>

#include <memory>
#include <string>

#include "addon.hpp"
#include "diversion.hpp"
#include "disk_wrap.hpp"
#include "diversion_wrap.hpp"
#include "region.hpp"

namespace bmjs {
namespace {

// A new region of byteLength formatted by `format(region)`; a format that throws leaves no region behind.
template <class Format>
auto formatNewRegion(bm::RegionKind kind, const std::string& name, uint64_t byteLength, Format format) {
  bm::RegionOptions options;
  options.kind = kind;
  options.name = name;
  options.create = true;
  options.byteLength = byteLength;
  std::shared_ptr<bm::Region> region = bm::Region::open(options);
  try {
    return format(region);
  } catch (...) {
    region->close();
    if (kind != bm::RegionKind::Anonymous) bm::Region::unlink(kind, name);
    throw;
  }
}

// An existing shared or file region (TypeError for an anonymous one: there is nothing to open).
std::shared_ptr<bm::Region> openExistingRegion(napi_env env, bm::RegionKind kind, const std::string& name, const char* what) {
  if (kind == bm::RegionKind::Anonymous) throwTypeError(env, std::string("an anonymous ") + what + " cannot be opened");
  bm::RegionOptions options;
  options.kind = kind;
  options.name = name;
  options.create = false;
  options.open = true;
  return bm::Region::open(options);
}

class WorkVolumeWrap final : public Napi::ObjectWrap<WorkVolumeWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d576f'726b3031ULL, 0x3c19e6a2'8f04d7b1ULL};
  static constexpr const char* kClassName = "WorkVolume";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<WorkVolumeWrap>(
        env, "WorkVolume",
        {
            prototypeMethod<WorkVolumeWrap, &WorkVolumeWrap::info>(env, "info"),
            prototypeMethod<WorkVolumeWrap, &WorkVolumeWrap::bitmap>(env, "bitmap"),
            prototypeMethod<WorkVolumeWrap, &WorkVolumeWrap::lookup>(env, "lookup"),
            prototypeMethod<WorkVolumeWrap, &WorkVolumeWrap::start>(env, "start"),
            prototypeMethod<WorkVolumeWrap, &WorkVolumeWrap::beginCopyBack>(env, "beginCopyBack"),
            prototypeMethod<WorkVolumeWrap, &WorkVolumeWrap::copyBackStep>(env, "copyBackStep"),
            prototypeMethod<WorkVolumeWrap, &WorkVolumeWrap::stats>(env, "stats"),
            prototypeMethod<WorkVolumeWrap, &WorkVolumeWrap::entries>(env, "entries"),
            prototypeMethod<WorkVolumeWrap, &WorkVolumeWrap::close>(env, "close"),
        });
    exports.Set("WorkVolume", constructor);
  }

  explicit WorkVolumeWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<WorkVolumeWrap>(info) {
    napi_env env = info.Env();
    try {
      const auto kind = static_cast<bm::RegionKind>(argIndexAtMost(env, arg(info, 0), "kind", 2));
      std::string name = argString(env, arg(info, 1), "name");
      const bool create = argBool(env, arg(info, 2), "create");
      std::shared_ptr<bm::Disk> dataDisk;
      if (info.Length() > 5 && !info[5].IsUndefined() && !info[5].IsNull()) dataDisk = diskFromObject(env, info[5], "dataDisk");
      if (create) {
        const uint64_t slotCount = argIndexAtMost(env, arg(info, 3), "slotCount", bm::WorkVolume::kMaxSlots);
        const uint64_t slotBytes = argIndexAtMost(env, arg(info, 4), "slotBytes", 65536);
        if (slotCount == 0) throwRangeError(env, "slotCount must be at least 1");
        if (slotBytes < 512 || (slotBytes & (slotBytes - 1)) != 0) throwRangeError(env, "slotBytes must be a power of two from 512 to 65536");
        core_ = formatNewRegion(kind, name, bm::WorkVolume::regionBytesFor(slotCount, static_cast<uint32_t>(slotBytes), dataDisk != nullptr),
                                [&](std::shared_ptr<bm::Region> region) {
                                  return bm::WorkVolume::create(std::move(region), slotCount, static_cast<uint32_t>(slotBytes), dataDisk);
                                });
      } else {
        core_ = bm::WorkVolume::open(openExistingRegion(env, kind, name, "work volume"), dataDisk);
      }
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<WorkVolumeWrap>(info);
  }

  std::shared_ptr<bm::WorkVolume> shared() const {
    if (!core_) throwClosed(bm::Code::ERR_DIVERSION_STATE, "work volume");
    return core_;
  }

 private:
  bm::WorkVolume& core() const { return *shared(); }

  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bm::WorkVolume& work = core();
    Napi::Array result = Napi::Array::New(env, 6);
    result.Set(0u, Napi::Number::New(env, static_cast<double>(work.slotCount())));
    result.Set(1u, Napi::Number::New(env, work.slotBytes()));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(work.state())));
    result.Set(3u, Napi::Number::New(env, static_cast<double>(work.terminal())));
    result.Set(4u, Napi::Number::New(env, static_cast<double>(work.copyBackCursor())));
    const auto mains = work.mains();
    Napi::Array ids = Napi::Array::New(env, mains.size());
    for (uint32_t i = 0; i < mains.size(); i++) ids.Set(i, Napi::BigInt::New(env, mains[i]));
    result.Set(5u, ids);
    return result;
  }

  Napi::Value bitmap(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    bm::WorkVolume& work = core();
    const uint64_t count = std::min<uint64_t>(work.slotCount(), argIndexAtMost(env, arg(info, 0), "maxSlots", 1 << 20));
    Napi::Uint8Array result = Napi::Uint8Array::New(info.Env(), count);
    for (uint64_t i = 0; i < count; i++) result[i] = work.slotWritten(i + 1) ? 1 : 0;
    return result;
  }

  Napi::Value lookup(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t main = argIndexAtMost(env, arg(info, 0), "main", bm::WorkVolume::kMaxMains - 1);
    const uint64_t block = argIndexAtMost(env, arg(info, 1), "block", (uint64_t(1) << 53) - 1);
    return Napi::Number::New(env, static_cast<double>(core().lookup(static_cast<uint32_t>(main), block)));
  }

  Napi::Value start(const Napi::CallbackInfo& info) {
    core().start();
    return info.Env().Undefined();
  }

  Napi::Value beginCopyBack(const Napi::CallbackInfo& info) {
    core().beginCopyBack();
    return info.Env().Undefined();
  }

  Napi::Value copyBackStep(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t maxSlots = argIndexAtMost(env, arg(info, 0), "maxSlots", 1 << 20);
    return Napi::Number::New(env, static_cast<double>(core().copyBackStep(maxSlots)));
  }

  Napi::Value stats(const Napi::CallbackInfo& info) {
    const bm::WorkStats s = core().stats();
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), 6);
    const uint64_t values[6] = {s.divertedWrites, s.fallbackWrites, s.inPlaceWrites, s.copiedBackSlots, s.divertedReads, s.slotErrors};
    for (size_t i = 0; i < 6; i++) result[i] = static_cast<double>(values[i]);
    return result;
  }

  Napi::Value entries(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t max = argIndexAtMost(env, arg(info, 0), "maxEntries", 1 << 20);
    const auto rows = core().entries(max);
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), rows.size() * 3);
    for (size_t i = 0; i < rows.size(); i++) {
      result[3 * i] = rows[i].main;
      result[3 * i + 1] = static_cast<double>(rows[i].block);
      result[3 * i + 2] = static_cast<double>(rows[i].slot);
    }
    return result;
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    core_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<bm::WorkVolume> core_;
};

class BackupVolumeWrap final : public Napi::ObjectWrap<BackupVolumeWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d426b'75703031ULL, 0x7a51c3e0'42d9b6f8ULL};
  static constexpr const char* kClassName = "BackupVolume";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<BackupVolumeWrap>(
        env, "BackupVolume",
        {
            prototypeMethod<BackupVolumeWrap, &BackupVolumeWrap::info>(env, "info"),
            prototypeMethod<BackupVolumeWrap, &BackupVolumeWrap::bitmap>(env, "bitmap"),
            prototypeMethod<BackupVolumeWrap, &BackupVolumeWrap::start>(env, "start"),
            prototypeMethod<BackupVolumeWrap, &BackupVolumeWrap::beginCopyBack>(env, "beginCopyBack"),
            prototypeMethod<BackupVolumeWrap, &BackupVolumeWrap::copyBackStep>(env, "copyBackStep"),
            prototypeMethod<BackupVolumeWrap, &BackupVolumeWrap::stats>(env, "stats"),
            prototypeMethod<BackupVolumeWrap, &BackupVolumeWrap::close>(env, "close"),
        });
    exports.Set("BackupVolume", constructor);
  }

  explicit BackupVolumeWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BackupVolumeWrap>(info) {
    napi_env env = info.Env();
    try {
      const auto kind = static_cast<bm::RegionKind>(argIndexAtMost(env, arg(info, 0), "kind", 2));
      std::string name = argString(env, arg(info, 1), "name");
      const bool create = argBool(env, arg(info, 2), "create");
      if (create) {
        const uint64_t byteLength = argIndex(env, arg(info, 3), "byteLength");
        const uint64_t blockBytes = argIndexAtMost(env, arg(info, 4), "blockBytes", 1 << 20);
        if (blockBytes < 512 || (blockBytes & (blockBytes - 1)) != 0) throwRangeError(env, "blockBytes must be a power of two from 512 to 1 MiB");
        if (byteLength == 0 || byteLength % blockBytes != 0) throwRangeError(env, "byteLength must be a positive multiple of blockBytes");
        core_ = formatNewRegion(kind, name, bm::BackupVolume::regionBytesFor(byteLength, static_cast<uint32_t>(blockBytes)),
                                [&](std::shared_ptr<bm::Region> region) {
                                  return bm::BackupVolume::create(std::move(region), byteLength, static_cast<uint32_t>(blockBytes));
                                });
      } else {
        core_ = bm::BackupVolume::open(openExistingRegion(env, kind, name, "backup volume"));
      }
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<BackupVolumeWrap>(info);
  }

  std::shared_ptr<bm::BackupVolume> shared() const {
    if (!core_) throwClosed(bm::Code::ERR_DIVERSION_STATE, "backup volume");
    return core_;
  }

 private:
  bm::BackupVolume& core() const { return *shared(); }

  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    bm::BackupVolume& backup = core();
    Napi::Array result = Napi::Array::New(env, 5);
    result.Set(0u, Napi::Number::New(env, static_cast<double>(backup.byteLength())));
    result.Set(1u, Napi::Number::New(env, backup.blockBytes()));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(backup.state())));
    result.Set(3u, Napi::Number::New(env, static_cast<double>(backup.divertedCount())));
    result.Set(4u, Napi::Number::New(env, static_cast<double>(backup.copyBackCursor())));
    return result;
  }

  Napi::Value bitmap(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    bm::BackupVolume& backup = core();
    const uint64_t count = std::min<uint64_t>(backup.blockCount(), argIndexAtMost(env, arg(info, 0), "maxBlocks", 1 << 20));
    Napi::Uint8Array result = Napi::Uint8Array::New(info.Env(), count);
    for (uint64_t i = 0; i < count; i++) result[i] = backup.diverted(i) ? 1 : 0;
    return result;
  }

  Napi::Value start(const Napi::CallbackInfo& info) {
    core().start();
    return info.Env().Undefined();
  }

  Napi::Value beginCopyBack(const Napi::CallbackInfo& info) {
    core().beginCopyBack();
    return info.Env().Undefined();
  }

  Napi::Value copyBackStep(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t maxBlocks = argIndexAtMost(env, arg(info, 0), "maxBlocks", 1 << 24);
    return Napi::Number::New(env, static_cast<double>(core().copyBackStep(maxBlocks)));
  }

  Napi::Value stats(const Napi::CallbackInfo& info) {
    const bm::BackupStats s = core().stats();
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), 4);
    const uint64_t values[4] = {s.divertedWrites, s.divertedReads, s.fallbackWrites, s.copiedBackBlocks};
    for (size_t i = 0; i < 4; i++) result[i] = static_cast<double>(values[i]);
    return result;
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    core_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<bm::BackupVolume> core_;
};

}  // namespace

std::shared_ptr<bm::BackupVolume> backupVolumeFromObject(napi_env env, napi_value value, const char* name) {
  return unwrapArgument<BackupVolumeWrap>(env, value, name)->shared();
}

std::shared_ptr<bm::WorkVolume> workVolumeFromObject(napi_env env, napi_value value, const char* name) {
  return unwrapArgument<WorkVolumeWrap>(env, value, name)->shared();
}

void initDiversion(Napi::Env env, Napi::Object exports) {
  WorkVolumeWrap::init(env, exports);
  BackupVolumeWrap::init(env, exports);
}

}  // namespace bmjs
