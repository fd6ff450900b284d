// Notes on the design
// -------------------
// The native SnapshotStore class over bm::SnapshotStore: the snapshots of one volume. The store
// installs itself on the core volume of the JS Volume it is given, so every later write of that
// Volume object preserves what the snapshots need (design section 4, step 2). Snapshots cross as
// (slot, id) pairs: TypeScript keeps them in its Snapshot objects, and the core refuses a pair
// whose snapshot was deleted (ERR_SNAPSHOT_NOT_FOUND), so a stale handle never reads the slot's
// next tenant. Snapshot records cross as arrays [slot, id (bigint), createdMs, state, preserved
// chunk count, name]; states are numbers (bm::SnapshotState: 1 valid, 2 invalid).
//
// `new SnapshotStore(volume, kind, name, create, chunkBytes, storeBytes)` maps the store's region
// and formats it (create) or opens it. A named region this call created is unlinked again when
// formatting fails. destroy() deletes every snapshot, clears the volume's "needs interceptor"
// word, closes, and unlinks a named region. Every call is synchronous and bounded by the volume's
// size (restore writes back at most the snapshot's preserved chunks).
#include <napi.h>

#include <memory>
#include <string>
#include <vector>

#include "addon.hpp"
#include "region.hpp"
#include "snapshot.hpp"
#include "volume_wrap.hpp"

namespace bmjs {
namespace {

constexpr size_t kStatsFieldCount = 9;

class SnapshotStoreResource final : public Resource {
 public:
  SnapshotStoreResource(std::shared_ptr<Registry> registry, std::shared_ptr<bm::SnapshotStore> store,
                        bm::RegionKind kind, std::string name)
      : Resource(std::move(registry)), core(std::move(store)), kind(kind), name(std::move(name)) {}
  ~SnapshotStoreResource() override { releaseFromDestructor(); }
  std::shared_ptr<bm::SnapshotStore> core;
  bm::RegionKind kind;
  std::string name;

 protected:
  void releaseCore() noexcept override {
    if (core) core->close();
  }
};

Napi::Array infoArray(Napi::Env env, const bm::SnapshotInfo& info) {
  Napi::Array result = Napi::Array::New(env, 6);
  result.Set(0u, Napi::Number::New(env, info.slot));
  result.Set(1u, Napi::BigInt::New(env, info.id));
  result.Set(2u, Napi::Number::New(env, static_cast<double>(info.createdMs)));
  result.Set(3u, Napi::Number::New(env, static_cast<double>(info.state)));
  result.Set(4u, Napi::Number::New(env, static_cast<double>(info.preservedChunkCount)));
  result.Set(5u, Napi::String::New(env, info.name));
  return result;
}

class SnapshotStoreWrap final : public Napi::ObjectWrap<SnapshotStoreWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d536e'61707374ULL, 0x5c1e93a2'7d40b6e1ULL};
  static constexpr const char* kClassName = "SnapshotStore";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<SnapshotStoreWrap>(
        env, "SnapshotStore",
        {
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::info>(env, "info"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::createSnapshot>(env, "createSnapshot"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::deleteSnapshot>(env, "deleteSnapshot"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::find>(env, "find"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::snapshotInfo>(env, "snapshotInfo"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::list>(env, "list"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::read>(env, "read"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::allocationMap>(env, "allocationMap"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::restore>(env, "restore"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::stats>(env, "stats"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::destroy>(env, "destroy"),
            prototypeMethod<SnapshotStoreWrap, &SnapshotStoreWrap::close>(env, "close"),
        });
    exports.Set("SnapshotStore", constructor);
    exports.Set("MAX_SNAPSHOTS", Napi::Number::New(env, bm::SnapshotStore::kMaxSnapshots));
    exports.Set("MAX_SNAPSHOT_CHUNK_BYTES",
                Napi::Number::New(env, static_cast<double>(bm::SnapshotStore::kMaxChunkBytes)));
  }

  // new SnapshotStore(volume, kind, name, create, chunkBytes, storeBytes)
  explicit SnapshotStoreWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<SnapshotStoreWrap>(info) {
    napi_env env = info.Env();
    try {
      std::shared_ptr<bm::Volume> volume = volumeFromObject(env, arg(info, 0), "volume");
      const auto kind = static_cast<bm::RegionKind>(argIndexAtMost(env, arg(info, 1), "kind", 2));
      std::string name = argString(env, arg(info, 2), "name");
      const bool create = argBool(env, arg(info, 3), "create");
      // Before any region is made or mapped: a second store on the same object is a mistake of
      // this object, not a name clash.
      if (volume->interceptor() != nullptr) {
        throw bm::Error(bm::Code::ERR_SNAPSHOT_ATTACHED,
                        "the volume object has a snapshot store (or another write interceptor) attached already");
      }
      std::shared_ptr<bm::SnapshotStore> store;
      if (create) {
        bm::SnapshotStoreOptions options;
        options.chunkBytes = argIndex(env, arg(info, 4), "chunkBytes");
        options.storeBytes = argIndex(env, arg(info, 5), "storeBytes");
        // Checked here too, so a bad option fails before a region is sized from it.
        if (options.chunkBytes == 0 || options.chunkBytes > bm::SnapshotStore::kMaxChunkBytes) {
          throwRangeError(env, "chunkBytes must be a power of two from the block size to " +
                                   std::to_string(bm::SnapshotStore::kMaxChunkBytes));
        }
        if (options.storeBytes > volume->capacityBytes() * 64) {
          throwRangeError(env, "storeBytes must be at most 64 times the volume's capacity");
        }
        bm::RegionOptions regionOptions;
        regionOptions.kind = kind;
        regionOptions.name = name;
        regionOptions.byteLength = bm::SnapshotStore::regionBytesFor(volume->capacityBytes(), options);
        regionOptions.create = true;
        std::shared_ptr<bm::Region> region = bm::Region::open(regionOptions);
        try {
          store = bm::SnapshotStore::create(region, volume, options);
        } catch (...) {
          region->close();
          if (kind != bm::RegionKind::Anonymous) bm::Region::unlink(kind, name);
          throw;
        }
      } else {
        if (kind == bm::RegionKind::Anonymous) throwTypeError(env, "an anonymous snapshot store cannot be opened");
        bm::RegionOptions regionOptions;
        regionOptions.kind = kind;
        regionOptions.name = name;
        regionOptions.create = false;
        regionOptions.open = true;
        store = bm::SnapshotStore::open(bm::Region::open(regionOptions), volume);
      }
      resource_ = std::make_shared<SnapshotStoreResource>(Addon::of(env).registry, std::move(store), kind,
                                                          std::move(name));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<SnapshotStoreWrap>(info);
  }

  ~SnapshotStoreWrap() override {
    if (resource_) resource_->requestClose();
  }

 private:
  bm::SnapshotStore& core() const {
    if (resource_->closed()) throwClosed(bm::Code::ERR_SNAPSHOT_CLOSED, "snapshot store");
    return *resource_->core;
  }

  static uint32_t argSlot(napi_env env, napi_value value) {
    return static_cast<uint32_t>(argIndexAtMost(env, value, "slot", bm::SnapshotStore::kMaxSnapshots - 1));
  }

  // [chunkBytes, chunkCount, storeChunkCount, capacityBytes, kind, region name]
  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bm::SnapshotStore& store = core();
    Napi::Array result = Napi::Array::New(env, 6);
    result.Set(0u, Napi::Number::New(env, static_cast<double>(store.chunkBytes())));
    result.Set(1u, Napi::Number::New(env, static_cast<double>(store.chunkCount())));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(store.storeChunkCount())));
    result.Set(3u, Napi::Number::New(env, static_cast<double>(store.capacityBytes())));
    result.Set(4u, Napi::Number::New(env, static_cast<double>(resource_->kind)));
    result.Set(5u, Napi::String::New(env, resource_->name));
    return result;
  }

  Napi::Value createSnapshot(const Napi::CallbackInfo& info) {
    const std::string name = argString(info.Env(), arg(info, 0), "name");
    return infoArray(info.Env(), core().createSnapshot(name));
  }

  Napi::Value deleteSnapshot(const Napi::CallbackInfo& info) {
    const std::string name = argString(info.Env(), arg(info, 0), "name");
    core().deleteSnapshot(name);
    return info.Env().Undefined();
  }

  Napi::Value find(const Napi::CallbackInfo& info) {
    const std::string name = argString(info.Env(), arg(info, 0), "name");
    return infoArray(info.Env(), core().find(name));
  }

  Napi::Value snapshotInfo(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint32_t slot = argSlot(env, arg(info, 0));
    const uint64_t id = argBigUint64(env, arg(info, 1), "id");
    return infoArray(info.Env(), core().info(slot, id));
  }

  Napi::Value list(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::vector<bm::SnapshotInfo> snapshots = core().list();
    Napi::Array result = Napi::Array::New(env, snapshots.size());
    for (uint32_t i = 0; i < snapshots.size(); ++i) result.Set(i, infoArray(env, snapshots[i]));
    return result;
  }

  // read(slot, id, byteOffset, target)
  Napi::Value read(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint32_t slot = argSlot(env, arg(info, 0));
    const uint64_t id = argBigUint64(env, arg(info, 1), "id");
    const uint64_t byteOffset = argIndex(env, arg(info, 2), "byteOffset");
    const Bytes target = argBytes(env, arg(info, 3), "target");
    core().read(slot, id, byteOffset, target.data, target.byteLength);
    return info.Env().Undefined();
  }

  // Float64Array of [byteOffset, byteLength, allocated (0|1)] triples.
  Napi::Value allocationMap(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint32_t slot = argSlot(env, arg(info, 0));
    const uint64_t id = argBigUint64(env, arg(info, 1), "id");
    const uint64_t byteOffset = argIndex(env, arg(info, 2), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 3), "byteLength");
    const std::vector<bm::RegionExtent> extents = core().allocationMap(slot, id, byteOffset, byteLength);
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), extents.size() * 3);
    for (size_t i = 0; i < extents.size(); ++i) {
      result[i * 3] = static_cast<double>(extents[i].byteOffset);
      result[i * 3 + 1] = static_cast<double>(extents[i].byteLength);
      result[i * 3 + 2] = extents[i].allocated ? 1 : 0;
    }
    return result;
  }

  Napi::Value restore(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint32_t slot = argSlot(env, arg(info, 0));
    const uint64_t id = argBigUint64(env, arg(info, 1), "id");
    return Napi::Number::New(env, static_cast<double>(core().restore(slot, id)));
  }

  // Float64Array of the fields of bm::SnapshotStoreStats in declaration order.
  Napi::Value stats(const Napi::CallbackInfo& info) {
    const bm::SnapshotStoreStats stats = core().stats();
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), kStatsFieldCount);
    const uint64_t values[kStatsFieldCount] = {
        stats.chunkBytes,  stats.storeChunkCount, stats.storeChunksUsed,
        stats.preserveCount, stats.preserveBytes, stats.sharedCount,
        stats.zeroChunkCount, stats.overflowCount, stats.snapshotCount};
    for (size_t i = 0; i < kStatsFieldCount; ++i) result[i] = static_cast<double>(values[i]);
    return result;
  }

  Napi::Value destroy(const Napi::CallbackInfo& info) {
    core().destroy();
    resource_->requestClose();
    if (resource_->kind != bm::RegionKind::Anonymous) bm::Region::unlink(resource_->kind, resource_->name);
    return info.Env().Undefined();
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    resource_->requestClose();
    return info.Env().Undefined();
  }

  std::shared_ptr<SnapshotStoreResource> resource_;
};

}  // namespace

void initSnapshot(Napi::Env env, Napi::Object exports) { SnapshotStoreWrap::init(env, exports); }

}  // namespace bmjs
