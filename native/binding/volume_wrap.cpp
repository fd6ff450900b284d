// Notes on the design
// -------------------
// The native Volume class over bm::Volume: the hot write path of the whole array, so it is kept
// lean. A call carries numbers and Uint8Arrays only; nothing is looked up by name and nothing is
// allocated per call. writev() gets the byte offsets packed by TypeScript into a Float64Array it
// reuses, the buffers in a plain array it reuses, and a count; the wrapper fills a WriteRequest
// array allocated once when the volume opened (kMaxBatchWrites entries) and makes one core call
// for the batch, which validates every request before any byte changes.
//
// Sequences cross as doubles: >0 the journal sequence, 0 no journal attached, -1 the journal was
// full (bm::Volume::kJournalFull).
//
// `new Volume(kind, name, create, capacityBytes, blockSize, strict)` maps the region and formats
// it (create) or opens the volume already in it. A named region this call created is unlinked
// again when formatting fails. flush() runs on the thread pool; close() while it is in flight
// takes effect (unmap) when it completes.
#include <napi.h>

#include <memory>
#include <vector>

#include "addon.hpp"
#include "bitmap_wrap.hpp"
#include "journal_wrap.hpp"
#include "lane_gate.hpp"
#include "region.hpp"
#include "volume.hpp"
#include "volume_wrap.hpp"

namespace bmjs {
namespace {

// Largest writev batch. TypeScript uses the same limit (Volume.MAX_WRITEV_COUNT).
constexpr size_t kMaxBatchWrites = 1024;
constexpr size_t kStatsFieldCount = 13;
// Largest window directArea() maps as one ArrayBuffer (TypeScript uses 1 GiB windows).
constexpr uint64_t kMaxDirectAreaBytes = uint64_t{1} << 30;

inline double sequenceToNumber(uint64_t sequence) {
  return sequence == bm::Volume::kJournalFull ? -1.0 : static_cast<double>(sequence);
}

class VolumeResource final : public Resource {
 public:
  VolumeResource(std::shared_ptr<Registry> registry, std::shared_ptr<bm::Volume> volume,
                 bm::RegionKind kind, std::string name)
      : Resource(std::move(registry)), core(std::move(volume)), kind(kind), name(std::move(name)) {}
  ~VolumeResource() override { releaseFromDestructor(); }
  std::shared_ptr<bm::Volume> core;
  bm::RegionKind kind;
  std::string name;

 protected:
  void releaseCore() noexcept override {
    if (core) core->close();
  }
};

class VolumeWrap final : public Napi::ObjectWrap<VolumeWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d566f'6c756d65ULL, 0x2b8e61d4'0c93f704ULL};
  static constexpr const char* kClassName = "Volume";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<VolumeWrap>(
        env, "Volume",
        {
            prototypeMethod<VolumeWrap, &VolumeWrap::info>(env, "info"),
            prototypeMethod<VolumeWrap, &VolumeWrap::read>(env, "read"),
            prototypeMethod<VolumeWrap, &VolumeWrap::write>(env, "write"),
            rawPrototypeMethod<VolumeWrap, &VolumeWrap::writev>(env, "writev"),
            prototypeMethod<VolumeWrap, &VolumeWrap::writeZeroes>(env, "writeZeroes"),
            prototypeMethod<VolumeWrap, &VolumeWrap::trim>(env, "trim"),
            prototypeMethod<VolumeWrap, &VolumeWrap::beginDirectWrite>(env, "beginDirectWrite"),
            prototypeMethod<VolumeWrap, &VolumeWrap::commitDirectWrite>(env, "commitDirectWrite"),
            prototypeMethod<VolumeWrap, &VolumeWrap::directArea>(env, "directArea"),
            prototypeMethod<VolumeWrap, &VolumeWrap::flush>(env, "flush"),
            prototypeMethod<VolumeWrap, &VolumeWrap::allocationMap>(env, "allocationMap"),
            prototypeMethod<VolumeWrap, &VolumeWrap::createBitmap>(env, "createBitmap"),
            prototypeMethod<VolumeWrap, &VolumeWrap::openBitmap>(env, "openBitmap"),
            prototypeMethod<VolumeWrap, &VolumeWrap::deleteBitmap>(env, "deleteBitmap"),
            prototypeMethod<VolumeWrap, &VolumeWrap::setBitmapRecording>(env, "setBitmapRecording"),
            prototypeMethod<VolumeWrap, &VolumeWrap::listBitmaps>(env, "listBitmaps"),
            prototypeMethod<VolumeWrap, &VolumeWrap::attachJournal>(env, "attachJournal"),
            prototypeMethod<VolumeWrap, &VolumeWrap::setLaneGate>(env, "setLaneGate"),
            prototypeMethod<VolumeWrap, &VolumeWrap::underLaneGate>(env, "underLaneGate"),
            prototypeMethod<VolumeWrap, &VolumeWrap::stats>(env, "stats"),
            prototypeMethod<VolumeWrap, &VolumeWrap::close>(env, "close"),
        });
    exports.Set("Volume", constructor);
    exports.Set("MAX_WRITEV_COUNT", Napi::Number::New(env, static_cast<double>(kMaxBatchWrites)));
  }

  // new Volume(kind, name, create, capacityBytes, blockSize, strict)
  explicit VolumeWrap(const Napi::CallbackInfo& info)
      : Napi::ObjectWrap<VolumeWrap>(info),
        requests_(new bm::WriteRequest[kMaxBatchWrites]),
        sequences_(new uint64_t[kMaxBatchWrites]) {
    napi_env env = info.Env();
    try {
      const auto kind = static_cast<bm::RegionKind>(argIndexAtMost(env, arg(info, 0), "kind", 2));
      std::string name = argString(env, arg(info, 1), "name");
      const bool create = argBool(env, arg(info, 2), "create");
      std::shared_ptr<bm::Volume> volume;
      if (create) {
        bm::VolumeOptions options;
        options.capacityBytes = argIndex(env, arg(info, 3), "capacityBytes");
        options.blockSize = static_cast<uint32_t>(
            argIndexAtMost(env, arg(info, 4), "blockSize", bm::Volume::kMaxBlockSize));
        options.strict = argBool(env, arg(info, 5), "strict");
        bm::RegionOptions regionOptions;
        regionOptions.kind = kind;
        regionOptions.name = name;
        regionOptions.byteLength = bm::Volume::regionBytesFor(options.capacityBytes);
        regionOptions.create = true;
        std::shared_ptr<bm::Region> region = bm::Region::open(regionOptions);
        try {
          volume = bm::Volume::create(region, options);
        } catch (...) {
          region->close();
          if (kind != bm::RegionKind::Anonymous) bm::Region::unlink(kind, name);
          throw;
        }
      } else {
        if (kind == bm::RegionKind::Anonymous) throwTypeError(env, "an anonymous volume cannot be opened");
        bm::RegionOptions regionOptions;
        regionOptions.kind = kind;
        regionOptions.name = name;
        regionOptions.create = false;
        regionOptions.open = true;
        volume = bm::Volume::open(bm::Region::open(regionOptions));
      }
      resource_ = std::make_shared<VolumeResource>(Addon::of(env).registry, std::move(volume), kind,
                                                   std::move(name));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<VolumeWrap>(info);
  }

  ~VolumeWrap() override {
    if (resource_) resource_->requestClose();
  }

  // The lane gate (null when none): the export's native lanes write under it (nbd_lane_wrap.cpp).
  std::shared_ptr<bm::LaneGate> laneGate() const { return gate_; }

  // The core volume, for wrappers that build on it (snapshot stores). ERR_VOLUME_CLOSED after close.
  std::shared_ptr<bm::Volume> shared() const {
    core();
    return resource_->core;
  }

 private:
  bm::Volume& core() const {
    if (resource_->closed()) throwClosed(bm::Code::ERR_VOLUME_CLOSED, "volume");
    return *resource_->core;
  }

  // [volumeId (bigint), capacityBytes, blockSize, strict, kind, name]
  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bm::Volume& volume = *resource_->core;
    Napi::Array result = Napi::Array::New(env, 6);
    result.Set(0u, Napi::BigInt::New(env, volume.volumeId()));
    result.Set(1u, Napi::Number::New(env, static_cast<double>(volume.capacityBytes())));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(volume.blockSize())));
    result.Set(3u, Napi::Boolean::New(env, volume.strict()));
    result.Set(4u, Napi::Number::New(env, static_cast<double>(resource_->kind)));
    result.Set(5u, Napi::String::New(env, resource_->name));
    return result;
  }

  Napi::Value read(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const Bytes target = argBytes(env, arg(info, 1), "target");
    core().read(byteOffset, target.data, target.byteLength);
    return Napi::Value();
  }

  Napi::Value write(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const Bytes source = argBytes(env, arg(info, 1), "source");
    const GateLock gate = lockGate();
    const uint64_t sequence = core().write(byteOffset, source.data, source.byteLength);
    napi_value result;
    napi_create_double(env, sequenceToNumber(sequence), &result);
    return Napi::Value(env, result);
  }

  // writev(byteOffsets: Float64Array, count, sequencesOut: Float64Array | undefined, ...buffers)
  // -> how many writes met a full journal. The buffers travel as arguments: reading them off the
  // call frame is far cheaper than one napi_get_element per write.
 public:
  napi_value writev(napi_env env, napi_callback_info callbackInfo, size_t argc) {
    if (argc < 3) throwTypeError(env, "writev needs byteOffsets, count and sequencesOut");
    if (argc > 3 + kMaxBatchWrites) {
      throwRangeError(env, "writev takes at most " + std::to_string(kMaxBatchWrites) + " buffers");
    }
    napi_value argv[3 + kMaxBatchWrites];
    napi_get_cb_info(env, callbackInfo, &argc, argv, nullptr, nullptr);
    const uint64_t count = argIndexAtMost(env, argv[1], "count", kMaxBatchWrites);
    if (argc - 3 < count) {
      throwRangeError(env, "writev got " + std::to_string(argc - 3) + " buffers for count " + std::to_string(count));
    }
    const double* byteOffsets = argFloat64Array(env, argv[0], "byteOffsets", count);
    double* sequencesOut = nullptr;
    napi_valuetype sequencesType = napi_undefined;
    napi_typeof(env, argv[2], &sequencesType);
    if (sequencesType != napi_undefined) sequencesOut = argFloat64Array(env, argv[2], "sequencesOut", count);
    bm::Volume& volume = core();
    for (uint32_t i = 0; i < count; ++i) {
      const double byteOffset = byteOffsets[i];
      if (!(byteOffset >= 0) || byteOffset > kMaxSafeInteger ||
          static_cast<double>(static_cast<uint64_t>(byteOffset)) != byteOffset) {
        throwRangeError(env, "byteOffsets[" + std::to_string(i) + "] must be a non-negative safe integer");
      }
      const Bytes data = argBytes(env, argv[3 + i], "buffer");
      requests_[i] = bm::WriteRequest{static_cast<uint64_t>(byteOffset), data.byteLength, data.data,
                                      bm::RecordKind::Write};
    }
    const GateLock gate = lockGate();
    const size_t fullCount = volume.writeBatch(requests_.get(), count, sequencesOut ? sequences_.get() : nullptr);
    if (sequencesOut != nullptr) {
      for (size_t i = 0; i < count; ++i) sequencesOut[i] = sequenceToNumber(sequences_[i]);
    }
    napi_value result;
    napi_create_double(env, static_cast<double>(fullCount), &result);
    return result;
  }

 private:
  Napi::Value writeZeroes(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    const bool mayPunchHole = argBool(env, arg(info, 2), "mayPunchHole");
    const GateLock gate = lockGate();
    return Napi::Number::New(env, sequenceToNumber(core().writeZeroes(byteOffset, byteLength, mayPunchHole)));
  }

  Napi::Value trim(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    const GateLock gate = lockGate();
    return Napi::Number::New(env, sequenceToNumber(core().trim(byteOffset, byteLength)));
  }

  // beginDirectWrite(byteOffset, byteLength) -> true when the bytes may land in the store at
  // directArea()[byteOffset...] (bm::Volume::beginDirectWrite), false when they must take write().
  Napi::Value beginDirectWrite(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    const GateLock gate = lockGate();
    return Napi::Boolean::New(env, core().beginDirectWrite(byteOffset, byteLength) != nullptr);
  }

  // directArea(byteOffset, byteLength) -> an external ArrayBuffer over that part of the data
  // area (the TypeScript Volume asks once per 1 GiB window and keeps it). Its finalizer holds
  // the region, so the mapping outlives a close() while a socket read may still land in a view
  // of it. Windows rather than one buffer per write: every external buffer counts as external
  // memory for V8, and one per 1 MiB write made the collector run constantly; windows rather
  // than one buffer for the whole area: V8 fails on external ArrayBuffers above 4 GiB.
  Napi::Value directArea(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    bm::Volume& volume = core();
    if (byteLength == 0 || byteLength > kMaxDirectAreaBytes) {
      throwRangeError(env, "directArea: byteLength must be 1.." + std::to_string(kMaxDirectAreaBytes));
    }
    volume.checkRange(byteOffset, byteLength);
    auto* hold = new std::shared_ptr<bm::Region>(volume.region());
    napi_value result;
    const napi_status status = napi_create_external_arraybuffer(
        env, volume.data() + byteOffset, static_cast<size_t>(byteLength),
        [](napi_env, void*, void* hint) { delete static_cast<std::shared_ptr<bm::Region>*>(hint); },
        hold, &result);
    if (status != napi_ok) {
      delete hold;
      return Napi::Env(env).Null();
    }
    return Napi::Value(env, result);
  }

  // commitDirectWrite(byteOffset, byteLength) -> sequence as write().
  Napi::Value commitDirectWrite(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    const GateLock gate = lockGate();
    return Napi::Number::New(env, sequenceToNumber(core().commitDirectWrite(byteOffset, byteLength)));
  }

  Napi::Value flush(const Napi::CallbackInfo& info) {
    bm::Volume& open = core();
    // A memory (memfd) volume's flush is a fence: done here, without the thread pool's round
    // trip, whose wake-up is most of the cost (milliseconds on a loaded machine: the lockstep
    // barrier waits for a secondary's flush). The promise still settles later, as a microtask.
    // Shared and file volumes go to the thread pool (close() waits for a flush in flight).
    if (open.region()->kind() == bm::RegionKind::Anonymous) {
      try {
        open.flush();
        Napi::Promise::Deferred done = Napi::Promise::Deferred::New(info.Env());
        done.Resolve(info.Env().Undefined());
        return done.Promise();
      } catch (...) {
        // Let the thread pool's path report the failure, as before.
      }
    }
    std::shared_ptr<bm::Volume> volume = resource_->core;
    auto* worker = new ResourceWorker(info.Env(), resource_, "blockmirror:volume.flush",
                                      [volume] { volume->flush(); });
    Napi::Promise promise = worker->promise();
    worker->Queue();
    return promise;
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

  Napi::Value createBitmap(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const std::string name = argString(env, arg(info, 0), "name");
    const uint64_t granularityBytes = argIndex(env, arg(info, 1), "granularityBytes");
    const bool recording = argBool(env, arg(info, 2), "recording");
    return newBitmapObject(info.Env(), core().createBitmap(name, granularityBytes, recording));
  }

  Napi::Value openBitmap(const Napi::CallbackInfo& info) {
    const std::string name = argString(info.Env(), arg(info, 0), "name");
    return newBitmapObject(info.Env(), core().openBitmap(name));
  }

  Napi::Value deleteBitmap(const Napi::CallbackInfo& info) {
    const std::string name = argString(info.Env(), arg(info, 0), "name");
    core().deleteBitmap(name);
    return info.Env().Undefined();
  }

  Napi::Value setBitmapRecording(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const std::string name = argString(env, arg(info, 0), "name");
    const bool recording = argBool(env, arg(info, 1), "recording");
    core().setBitmapRecording(name, recording);
    return info.Env().Undefined();
  }

  // [{ name, granularityBytes, bitCount, recording }]
  Napi::Value listBitmaps(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::vector<bm::BitmapSlotInfo> slots = core().listBitmaps();
    Napi::Array result = Napi::Array::New(env, slots.size());
    for (uint32_t i = 0; i < slots.size(); ++i) {
      Napi::Object entry = Napi::Object::New(env);
      entry.Set("name", Napi::String::New(env, slots[i].name));
      entry.Set("granularityBytes", Napi::Number::New(env, static_cast<double>(slots[i].granularityBytes)));
      entry.Set("bitCount", Napi::Number::New(env, static_cast<double>(slots[i].bitCount)));
      entry.Set("recording", Napi::Boolean::New(env, slots[i].recording));
      result.Set(i, entry);
    }
    return result;
  }

  Napi::Value attachJournal(const Napi::CallbackInfo& info) {
    bm::Volume& volume = core();
    if (info[0].IsNull() || info[0].IsUndefined()) {
      volume.attachJournal(nullptr);
    } else {
      volume.attachJournal(journalFromObject(info.Env(), arg(info, 0), "journal"));
    }
    return info.Env().Undefined();
  }

  // setLaneGate(open: boolean | null): with a boolean the volume has a lane gate
  // (lane_gate.hpp), created at the first call, open or closed; every write of this object
  // takes its lock from then on. null closes it and drops it (lanes that hold it see it closed).
  Napi::Value setLaneGate(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    core();
    if (info[0].IsNull() || info[0].IsUndefined()) {
      if (gate_ != nullptr) setGateOpen(false);
      gate_.reset();
      return info.Env().Undefined();
    }
    const bool open = argBool(env, arg(info, 0), "open");
    if (gate_ == nullptr) gate_ = std::make_shared<bm::LaneGate>();
    setGateOpen(open);
    return info.Env().Undefined();
  }

  // underLaneGate(fn): calls fn() with the gate's lock held, so no lane write is between its
  // store and its journal record meanwhile (a pair's bitmap rotation reads the journal's next
  // sequence as the seal: lane_gate.hpp); returns what fn returns. This object's own writes and
  // setLaneGate inside fn run under that same hold (the lock is not taken twice). Without a gate
  // it just calls fn.
  Napi::Value underLaneGate(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    core();
    if (!info[0].IsFunction()) throwTypeError(env, "fn must be a function");
    const Napi::Function fn = info[0].As<Napi::Function>();
    if (gate_ == nullptr || gateHeld_) return fn.Call({});
    const std::shared_ptr<bm::LaneGate> gate = gate_;  // alive even if fn drops the gate
    std::unique_lock<std::mutex> lock(gate->mutex());
    gateHeld_ = true;
    try {
      Napi::Value result = fn.Call({});
      gateHeld_ = false;
      return result;
    } catch (...) {
      gateHeld_ = false;
      throw;
    }
  }

  void setGateOpen(bool open) {
    if (gateHeld_) gate_->setOpenLocked(open);
    else gate_->setOpen(open);
  }

  // The gate's lock for one write (no lock without a gate, or inside underLaneGate, which holds it).
  using GateLock = std::unique_lock<std::mutex>;
  GateLock lockGate() const { return gate_ == nullptr || gateHeld_ ? GateLock() : GateLock(gate_->mutex()); }

  // Float64Array of the counters in bm::VolumeStats order.
  Napi::Value stats(const Napi::CallbackInfo& info) {
    return volumeStatsArray(info.Env(), core().stats());
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    resource_->requestClose();
    return info.Env().Undefined();
  }

  std::shared_ptr<VolumeResource> resource_;
  std::shared_ptr<bm::LaneGate> gate_;
  // True while underLaneGate holds the gate's lock on the JS thread.
  bool gateHeld_ = false;
  std::unique_ptr<bm::WriteRequest[]> requests_;
  std::unique_ptr<uint64_t[]> sequences_;
};

}  // namespace

Napi::Float64Array volumeStatsArray(Napi::Env env, const bm::VolumeStats& stats) {
  Napi::Float64Array result = Napi::Float64Array::New(env, kStatsFieldCount);
  const uint64_t values[kStatsFieldCount] = {
      stats.readCount,  stats.readBytes,  stats.writeCount,         stats.writeBytes,
      stats.zeroCount,  stats.zeroBytes,  stats.trimCount,          stats.trimBytes,
      stats.flushCount, stats.batchCount, stats.journalAppendCount, stats.journalFullCount,
      stats.bitmapMarkCount};
  for (size_t i = 0; i < kStatsFieldCount; ++i) result[i] = static_cast<double>(values[i]);
  return result;
}

std::shared_ptr<bm::Volume> volumeFromObject(napi_env env, napi_value value, const char* name) {
  return unwrapArgument<VolumeWrap>(env, value, name)->shared();
}

std::shared_ptr<bm::LaneGate> laneGateFromObject(napi_env env, napi_value value, const char* name) {
  return unwrapArgument<VolumeWrap>(env, value, name)->laneGate();
}

void initVolume(Napi::Env env, Napi::Object exports) { VolumeWrap::init(env, exports); }

}  // namespace bmjs
