// Notes on the design
// -------------------
// The native Region class: a thin wrapper over bm::Region. The TypeScript class
// (src/storage/region.ts) owns the naming rules and checks arguments first; this file checks them
// again and converts. Region.flush() runs msync/fsync on the thread pool; close() while a flush
// is in flight marks the region closed at once and unmaps when the flush completes (see Resource
// in addon.hpp).
#include <napi.h>

#include <memory>
#include <vector>

#include "addon.hpp"
#include "region.hpp"

namespace bmjs {
namespace {

class RegionResource final : public Resource {
 public:
  RegionResource(std::shared_ptr<Registry> registry, std::shared_ptr<bm::Region> region)
      : Resource(std::move(registry)), core(std::move(region)) {}
  ~RegionResource() override { releaseFromDestructor(); }
  std::shared_ptr<bm::Region> core;

 protected:
  void releaseCore() noexcept override {
    if (core) core->close();
  }
};

class RegionWrap final : public Napi::ObjectWrap<RegionWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d5265'67696f6eULL, 0x9d7c1f0e'3a214b01ULL};
  static constexpr const char* kClassName = "Region";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<RegionWrap>(
        env, "Region",
        {
            prototypeMethod<RegionWrap, &RegionWrap::info>(env, "info"),
            prototypeMethod<RegionWrap, &RegionWrap::read>(env, "read"),
            prototypeMethod<RegionWrap, &RegionWrap::write>(env, "write"),
            prototypeMethod<RegionWrap, &RegionWrap::trim>(env, "trim"),
            prototypeMethod<RegionWrap, &RegionWrap::allocationMap>(env, "allocationMap"),
            prototypeMethod<RegionWrap, &RegionWrap::allocatedBytes>(env, "allocatedBytes"),
            prototypeMethod<RegionWrap, &RegionWrap::flush>(env, "flush"),
            prototypeMethod<RegionWrap, &RegionWrap::close>(env, "close"),
        });
    exports.Set("Region", constructor);
    exports.Set("unlinkRegion", Napi::Function::New<unlinkRegion>(env, "unlinkRegion"));
  }

  // new Region(kind, name, byteLength, create, open)
  explicit RegionWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<RegionWrap>(info) {
    napi_env env = info.Env();
    try {
      bm::RegionOptions options;
      options.kind = static_cast<bm::RegionKind>(argIndexAtMost(env, arg(info, 0), "kind", 2));
      options.name = argString(env, arg(info, 1), "name");
      options.byteLength = argIndex(env, arg(info, 2), "byteLength");
      options.create = argBool(env, arg(info, 3), "create");
      options.open = argBool(env, arg(info, 4), "open");
      if (!options.create && !options.open) throwTypeError(env, "one of create and open must be true");
      resource_ = std::make_shared<RegionResource>(Addon::of(env).registry, bm::Region::open(options));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<RegionWrap>(info);
  }

  ~RegionWrap() override {
    if (resource_) resource_->requestClose();
  }

 private:
  bm::Region& core() const {
    if (resource_->closed()) throwClosed(bm::Code::ERR_REGION_CLOSED, "region");
    return *resource_->core;
  }

  static Napi::Value unlinkRegion(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    try {
      auto kind = static_cast<bm::RegionKind>(argIndexAtMost(env, arg(info, 0), "kind", 2));
      if (kind == bm::RegionKind::Anonymous) throwTypeError(env, "an anonymous region has no name to unlink");
      std::string name = argString(env, arg(info, 1), "name");
      return Napi::Boolean::New(env, bm::Region::unlink(kind, name));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
  }

  // [kind, name, byteLength, created]
  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bm::Region& region = *resource_->core;
    Napi::Array result = Napi::Array::New(env, 4);
    result.Set(0u, Napi::Number::New(env, static_cast<double>(region.kind())));
    result.Set(1u, Napi::String::New(env, region.name()));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(region.byteLength())));
    result.Set(3u, Napi::Boolean::New(env, region.created()));
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

  Napi::Value trim(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    core().trim(byteOffset, byteLength);
    return info.Env().Undefined();
  }

  // Float64Array of [byteOffset, byteLength, allocated (0|1)] triples.
  Napi::Value allocationMap(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    const std::vector<bm::RegionExtent> extents = core().allocationMap(byteOffset, byteLength);
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), extents.size() * 3);
    for (size_t i = 0; i < extents.size(); ++i) {
      result[i * 3] = static_cast<double>(extents[i].byteOffset);
      result[i * 3 + 1] = static_cast<double>(extents[i].byteLength);
      result[i * 3 + 2] = extents[i].allocated ? 1 : 0;
    }
    return result;
  }

  Napi::Value allocatedBytes(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(core().allocatedBytes()));
  }

  Napi::Value flush(const Napi::CallbackInfo& info) {
    std::shared_ptr<bm::Region> region = core().closed() ? nullptr : resource_->core;
    if (!region) throwClosed(bm::Code::ERR_REGION_CLOSED, "region");
    auto* worker = new ResourceWorker(info.Env(), resource_, "blockmirror:region.flush",
                                      [region] { region->flushAll(); });
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    resource_->requestClose();
    return Napi::Boolean::New(info.Env(), resource_->released());
  }

  std::shared_ptr<RegionResource> resource_;
};

}  // namespace

void initRegion(Napi::Env env, Napi::Object exports) { RegionWrap::init(env, exports); }

}  // namespace bmjs
