// Notes on the design
// -------------------
// The native Disk class over bm::Disk: an emulated disk on a region of its own.
// `new Disk(kind, name, create, capacityBytes, sectorSize, errorThreshold, seed, status)` formats
// a new region (create) or opens a named one (the geometry arguments are then ignored). A named
// region this call created is unlinked again when formatting fails.
//
// I/O failures of the emulated medium arrive as BlockmirrorError ERR_DISK_IO with .errno (the
// core returns the errno; the binding throws). Fault rules cross as arrays [index, operations,
// errno, byteOffset, byteLength, rateMillionths, afterCount, latencyUs, matchedCount,
// firedCount]; statuses as numbers (bm::DiskStatus). destroy() closes and unlinks a named region.
#include <napi.h>

#include <cstring>
#include <memory>
#include <string>

#include "addon.hpp"
#include "disk.hpp"
#include "disk_wrap.hpp"
#include "region.hpp"

namespace bmjs {
namespace {

constexpr size_t kStatsFieldCount = 8;

class DiskResource final : public Resource {
 public:
  DiskResource(std::shared_ptr<Registry> registry, std::shared_ptr<bm::Disk> disk, bm::RegionKind kind, std::string name)
      : Resource(std::move(registry)), core(std::move(disk)), kind(kind), name(std::move(name)) {}
  ~DiskResource() override { releaseFromDestructor(); }
  std::shared_ptr<bm::Disk> core;
  bm::RegionKind kind;
  std::string name;

 protected:
  void releaseCore() noexcept override {
    if (core) core->close();
  }
};

[[noreturn]] void throwIo(napi_env env, const char* operation, uint64_t byteOffset, uint64_t byteLength, int errnoValue) {
  throw bm::Error(bm::Code::ERR_DISK_IO,
                  std::string("disk ") + operation + " [" + std::to_string(byteOffset) + ", +" + std::to_string(byteLength) +
                      ") failed: " + std::strerror(errnoValue),
                  errnoValue);
}

class DiskWrap final : public Napi::ObjectWrap<DiskWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d4469'736b3031ULL, 0x7f3a9c41'd2e605b8ULL};
  static constexpr const char* kClassName = "Disk";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<DiskWrap>(
        env, "Disk",
        {
            prototypeMethod<DiskWrap, &DiskWrap::info>(env, "info"),
            prototypeMethod<DiskWrap, &DiskWrap::read>(env, "read"),
            prototypeMethod<DiskWrap, &DiskWrap::write>(env, "write"),
            prototypeMethod<DiskWrap, &DiskWrap::writeZeroes>(env, "writeZeroes"),
            prototypeMethod<DiskWrap, &DiskWrap::addFault>(env, "addFault"),
            prototypeMethod<DiskWrap, &DiskWrap::removeFault>(env, "removeFault"),
            prototypeMethod<DiskWrap, &DiskWrap::clearFaults>(env, "clearFaults"),
            prototypeMethod<DiskWrap, &DiskWrap::faults>(env, "faults"),
            prototypeMethod<DiskWrap, &DiskWrap::fail>(env, "fail"),
            prototypeMethod<DiskWrap, &DiskWrap::heal>(env, "heal"),
            prototypeMethod<DiskWrap, &DiskWrap::status>(env, "status"),
            prototypeMethod<DiskWrap, &DiskWrap::setStatus>(env, "setStatus"),
            prototypeMethod<DiskWrap, &DiskWrap::errorThreshold>(env, "errorThreshold"),
            prototypeMethod<DiskWrap, &DiskWrap::setErrorThreshold>(env, "setErrorThreshold"),
            prototypeMethod<DiskWrap, &DiskWrap::stats>(env, "stats"),
            prototypeMethod<DiskWrap, &DiskWrap::resetStats>(env, "resetStats"),
            prototypeMethod<DiskWrap, &DiskWrap::destroy>(env, "destroy"),
            prototypeMethod<DiskWrap, &DiskWrap::close>(env, "close"),
        });
    exports.Set("Disk", constructor);
    exports.Set("MAX_DISK_FAULTS", Napi::Number::New(env, bm::Disk::kMaxFaults));
    exports.Set("MAX_DISK_LATENCY_US", Napi::Number::New(env, bm::Disk::kMaxLatencyUs));
  }

  explicit DiskWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<DiskWrap>(info) {
    napi_env env = info.Env();
    try {
      const auto kind = static_cast<bm::RegionKind>(argIndexAtMost(env, arg(info, 0), "kind", 2));
      std::string name = argString(env, arg(info, 1), "name");
      const bool create = argBool(env, arg(info, 2), "create");
      std::shared_ptr<bm::Disk> disk;
      if (create) {
        bm::DiskOptions options;
        options.capacityBytes = argIndex(env, arg(info, 3), "capacityBytes");
        options.sectorSize = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 4), "sectorSize", bm::Disk::kMaxSectorSize));
        options.errorThreshold = argIndex(env, arg(info, 5), "errorThreshold");
        options.seed = argIndex(env, arg(info, 6), "seed");
        options.status = static_cast<bm::DiskStatus>(argIndexAtMost(env, arg(info, 7), "status", 4));
        if (options.capacityBytes == 0 || options.capacityBytes > (uint64_t{1} << 50)) {
          throwRangeError(env, "capacityBytes must be from 1 to 2^50");
        }
        bm::RegionOptions regionOptions;
        regionOptions.kind = kind;
        regionOptions.name = name;
        regionOptions.byteLength = bm::Disk::regionBytesFor(options.capacityBytes);
        regionOptions.create = true;
        std::shared_ptr<bm::Region> region = bm::Region::open(regionOptions);
        try {
          disk = bm::Disk::create(region, options);
        } catch (...) {
          region->close();
          if (kind != bm::RegionKind::Anonymous) bm::Region::unlink(kind, name);
          throw;
        }
      } else {
        if (kind == bm::RegionKind::Anonymous) throwTypeError(env, "an anonymous disk cannot be opened");
        bm::RegionOptions regionOptions;
        regionOptions.kind = kind;
        regionOptions.name = name;
        regionOptions.create = false;
        regionOptions.open = true;
        disk = bm::Disk::open(bm::Region::open(regionOptions));
      }
      resource_ = std::make_shared<DiskResource>(Addon::of(env).registry, std::move(disk), kind, std::move(name));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<DiskWrap>(info);
  }

  ~DiskWrap() override {
    if (resource_) resource_->requestClose();
  }

  std::shared_ptr<bm::Disk> shared() const {
    if (resource_->closed()) throwClosed(bm::Code::ERR_DISK_CLOSED, "disk");
    return resource_->core;
  }

 private:
  bm::Disk& core() const {
    if (resource_->closed()) throwClosed(bm::Code::ERR_DISK_CLOSED, "disk");
    return *resource_->core;
  }

  // [diskId, capacityBytes, sectorSize, kind, region name]
  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bm::Disk& disk = core();
    Napi::Array result = Napi::Array::New(env, 5);
    result.Set(0u, Napi::BigInt::New(env, disk.diskId()));
    result.Set(1u, Napi::Number::New(env, static_cast<double>(disk.capacityBytes())));
    result.Set(2u, Napi::Number::New(env, disk.sectorSize()));
    result.Set(3u, Napi::Number::New(env, static_cast<double>(resource_->kind)));
    result.Set(4u, Napi::String::New(env, resource_->name));
    return result;
  }

  Napi::Value read(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const Bytes target = argBytes(env, arg(info, 1), "target");
    const int failure = core().read(byteOffset, target.data, target.byteLength);
    if (failure != 0) throwIo(env, "read", byteOffset, target.byteLength, failure);
    return info.Env().Undefined();
  }

  Napi::Value write(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const Bytes source = argBytes(env, arg(info, 1), "source");
    const int failure = core().write(byteOffset, source.data, source.byteLength);
    if (failure != 0) throwIo(env, "write", byteOffset, source.byteLength, failure);
    return info.Env().Undefined();
  }

  Napi::Value writeZeroes(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    const int failure = core().write(byteOffset, nullptr, byteLength);
    if (failure != 0) throwIo(env, "write", byteOffset, byteLength, failure);
    return info.Env().Undefined();
  }

  // addFault(operations, errno, byteOffset, byteLength, rateMillionths, afterCount, latencyUs)
  Napi::Value addFault(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    bm::DiskFault fault;
    fault.operations = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 0), "operations", 3));
    fault.errnoValue = static_cast<int32_t>(argIndexAtMost(env, arg(info, 1), "errno", 4095));
    fault.byteOffset = argIndex(env, arg(info, 2), "byteOffset");
    fault.byteLength = argIndex(env, arg(info, 3), "byteLength");
    fault.rateMillionths = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 4), "rateMillionths", 1000000));
    fault.afterCount = argIndex(env, arg(info, 5), "afterCount");
    fault.latencyUs = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 6), "latencyUs", bm::Disk::kMaxLatencyUs));
    return Napi::Number::New(env, core().addFault(fault));
  }

  Napi::Value removeFault(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const auto index = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 0), "index", bm::Disk::kMaxFaults - 1));
    return Napi::Boolean::New(env, core().removeFault(index));
  }

  Napi::Value clearFaults(const Napi::CallbackInfo& info) {
    core().clearFaults();
    return info.Env().Undefined();
  }

  Napi::Value faults(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const auto faults = core().faults();
    Napi::Array result = Napi::Array::New(env, faults.size());
    for (uint32_t i = 0; i < faults.size(); i++) {
      const bm::DiskFaultInfo& f = faults[i];
      const double values[10] = {static_cast<double>(f.index),           static_cast<double>(f.fault.operations),
                                 static_cast<double>(f.fault.errnoValue),  static_cast<double>(f.fault.byteOffset),
                                 static_cast<double>(f.fault.byteLength),  static_cast<double>(f.fault.rateMillionths),
                                 static_cast<double>(f.fault.afterCount),  static_cast<double>(f.fault.latencyUs),
                                 static_cast<double>(f.matchedCount),      static_cast<double>(f.firedCount)};
      Napi::Array entry = Napi::Array::New(env, 10);
      for (uint32_t k = 0; k < 10; k++) entry.Set(k, Napi::Number::New(env, values[k]));
      result.Set(i, entry);
    }
    return result;
  }

  Napi::Value fail(const Napi::CallbackInfo& info) {
    core().fail();
    return info.Env().Undefined();
  }

  Napi::Value heal(const Napi::CallbackInfo& info) {
    core().heal();
    return info.Env().Undefined();
  }

  Napi::Value status(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(core().status()));
  }

  Napi::Value setStatus(const Napi::CallbackInfo& info) {
    const auto status = static_cast<bm::DiskStatus>(argIndexAtMost(info.Env(), arg(info, 0), "status", 4));
    core().setStatus(status);
    return info.Env().Undefined();
  }

  Napi::Value errorThreshold(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(core().errorThreshold()));
  }

  Napi::Value setErrorThreshold(const Napi::CallbackInfo& info) {
    core().setErrorThreshold(argIndex(info.Env(), arg(info, 0), "errorThreshold"));
    return info.Env().Undefined();
  }

  // Float64Array of bm::DiskStats in declaration order.
  Napi::Value stats(const Napi::CallbackInfo& info) {
    const bm::DiskStats stats = core().stats();
    const uint64_t values[kStatsFieldCount] = {stats.readCount,      stats.readBytes,       stats.writeCount,
                                               stats.writeBytes,     stats.readErrorCount,  stats.writeErrorCount,
                                               stats.errorCount,     stats.delayedCount};
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), kStatsFieldCount);
    for (size_t i = 0; i < kStatsFieldCount; i++) result[i] = static_cast<double>(values[i]);
    return result;
  }

  Napi::Value resetStats(const Napi::CallbackInfo& info) {
    core().resetStats();
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

  std::shared_ptr<DiskResource> resource_;
};

}  // namespace

std::shared_ptr<bm::Disk> diskFromObject(napi_env env, napi_value value, const char* name) {
  return unwrapArgument<DiskWrap>(env, value, name)->shared();
}

void initDisk(Napi::Env env, Napi::Object exports) { DiskWrap::init(env, exports); }

}  // namespace bmjs
