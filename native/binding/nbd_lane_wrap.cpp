// Notes on the design
// -------------------
// The JavaScript face of a native NBD lane (native/core/nbd_lane.hpp, docs/nbd-native.md):
//
//   new NbdLane(volume, fd, structured, transmissionFlags, sizeBytes, minimumBlockBytes,
//               maximumBlockBytes, holeDetectionMinBytes, directWrites, leftover, onEnd,
//               allocationContextId = 0)
//
// starts one lane on a thread of its own and returns at once. `volume` is the main thread's
// Volume object; the lane gets a core Volume object of its own over the same Region (the same
// mapping, the same bitmaps, directory and counters' region; no interceptor: the caller only
// starts lanes for volumes without one, and a snapshot store created later makes the lane's
// writes fail rather than bypass copy-on-write). A volume with a lane gate (setLaneGate: an
// async primary's) gives the lane its gate and its journal, attached to the lane's volume too. The lane's objects hold the Region by
// shared_ptr, so closing the JS volume cannot unmap the pages under a running lane.
//
// `fd` is the lane's from the moment the constructor returns (it closes it when it ends, or
// gives it back on hand-back); when the constructor throws, the fd is still the caller's.
//
// onEnd(end, handBack, error) is called once, on the JS thread, after the lane thread has left
// run(): `end` is 'client', 'server', 'hand-back' or 'error'; `handBack` is a Buffer with the
// bytes from the handed-back request's header on (null otherwise); `error` the socket error's
// text ('' otherwise). A thread-safe function carries it; it keeps the loop alive while the lane
// runs, as an open socket does.
//
// stop(graceful) may be called at any time (after the end it does nothing). wait(ms) blocks the
// JS thread until the lane thread has left run() (true) or ms passed (false): the synchronous
// eviction NbdServer.setExportVolume needs. counters() gives the lane's 14 server counters
// (SERVER_COUNTERS layout) and volumeStats() its volume object's 13 stats (VOLUME_STATS_KEYS
// order), both read from atomics, exact after the end.
#include <napi.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "addon.hpp"
#include "nbd_lane.hpp"
#include "volume_wrap.hpp"

namespace bmjs {
namespace {

struct LaneState {
  std::shared_ptr<bm::Volume> volume;
  std::unique_ptr<bm::NbdLane> lane;
  Napi::ThreadSafeFunction onEnd;
  std::mutex mutex;
  std::condition_variable changed;
  bool ended = false;
  bm::NbdLaneEnd end = bm::NbdLaneEnd::Running;
};

// The JS-thread half of the end event.
void deliverEnd(Napi::Env env, Napi::Function callback, LaneState* state) {
  if (env == nullptr || callback.IsEmpty()) return;  // the environment is going away
  Napi::Value handBack = env.Null();
  if (state->end == bm::NbdLaneEnd::HandBack) {
    const std::vector<uint8_t>& bytes = state->lane->handBackBytes();
    handBack = Napi::Buffer<uint8_t>::Copy(env, bytes.data(), bytes.size());
  }
  try {
    callback.Call({Napi::String::New(env, bm::nbdLaneEndName(state->end)), handBack,
                   Napi::String::New(env, state->lane->errorMessage())});
  } catch (const Napi::Error& error) {
    error.ThrowAsJavaScriptException();  // an uncaught exception of the process, as from any callback
  }
}

class NbdLaneWrap final : public Napi::ObjectWrap<NbdLaneWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d4c61'6e653031ULL, 0x4f2d81b7'c03a96e5ULL};
  static constexpr const char* kClassName = "NbdLane";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<NbdLaneWrap>(
        env, "NbdLane",
        {
            prototypeMethod<NbdLaneWrap, &NbdLaneWrap::stop>(env, "stop"),
            prototypeMethod<NbdLaneWrap, &NbdLaneWrap::wait>(env, "wait"),
            prototypeMethod<NbdLaneWrap, &NbdLaneWrap::counters>(env, "counters"),
            prototypeMethod<NbdLaneWrap, &NbdLaneWrap::volumeStats>(env, "volumeStats"),
        });
    exports.Set("NbdLane", constructor);
  }

  explicit NbdLaneWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NbdLaneWrap>(info) {
    napi_env env = info.Env();
    try {
      std::shared_ptr<bm::Volume> main = volumeFromObject(env, arg(info, 0), "volume");
      bm::NbdLaneOptions options;
      options.fd = static_cast<int>(argIndexAtMost(env, arg(info, 1), "fd", INT32_MAX));
      options.structured = argBool(env, arg(info, 2), "structured");
      options.transmissionFlags = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 3), "transmissionFlags", 0xffff));
      options.sizeBytes = argIndex(env, arg(info, 4), "sizeBytes");
      options.minimumBlockBytes = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 5), "minimumBlockBytes", UINT32_MAX));
      options.maximumBlockBytes = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 6), "maximumBlockBytes", UINT32_MAX));
      options.holeDetectionMinBytes = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 7), "holeDetectionMinBytes", UINT32_MAX));
      options.directWrites = argBool(env, arg(info, 8), "directWrites");
      const Bytes leftover = argBytes(env, arg(info, 9), "leftover");
      options.leftover.assign(leftover.data, leftover.data + leftover.byteLength);
      Napi::Value callback = info[10];
      if (!callback.IsFunction()) throwTypeError(env, "onEnd must be a function");
      if (info.Length() > 11 && !info[11].IsUndefined()) {
        options.allocationContextId = static_cast<uint32_t>(argIndexAtMost(env, arg(info, 11), "allocationContextId", UINT32_MAX));
      }

      auto state = std::make_shared<LaneState>();
      state->volume = std::shared_ptr<bm::Volume>(bm::Volume::open(main->region()));
      // A replicated volume's export: the lane journals into the volume's journal, under its gate.
      options.gate = laneGateFromObject(env, arg(info, 0), "volume");
      if (options.gate != nullptr) {
        if (main->journal() == nullptr) throwTypeError(env, "a volume with a lane gate needs its journal attached");
        state->volume->attachJournal(main->journal());
      }
      state->lane = std::make_unique<bm::NbdLane>(state->volume, std::move(options));
      state->onEnd = Napi::ThreadSafeFunction::New(info.Env(), callback.As<Napi::Function>(), "blockmirror:nbd-lane", 0, 1);
      try {
        std::thread([state] {
          const bm::NbdLaneEnd end = state->lane->run();
          {
            std::lock_guard<std::mutex> lock(state->mutex);
            state->end = end;
            state->ended = true;
          }
          state->changed.notify_all();
          // The callback holds the state until it ran (or the environment went away).
          auto* hold = new std::shared_ptr<LaneState>(state);
          const napi_status status = state->onEnd.NonBlockingCall(
              hold, [](Napi::Env env, Napi::Function callback, std::shared_ptr<LaneState>* held) {
                deliverEnd(env, callback, held->get());
                delete held;
              });
          if (status != napi_ok) delete hold;
          state->onEnd.Release();
        }).detach();
      } catch (...) {
        state->onEnd.Release();  // no thread: the fd stays the caller's
        throw;
      }
      state_ = std::move(state);
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<NbdLaneWrap>(info);
  }

 private:
  Napi::Value stop(const Napi::CallbackInfo& info) {
    state_->lane->stop(argBool(info.Env(), arg(info, 0), "graceful"));
    return info.Env().Undefined();
  }

  Napi::Value wait(const Napi::CallbackInfo& info) {
    const uint64_t ms = argIndexAtMost(info.Env(), arg(info, 0), "ms", 3'600'000);
    std::unique_lock<std::mutex> lock(state_->mutex);
    const bool ended = state_->changed.wait_for(lock, std::chrono::milliseconds(ms), [this] { return state_->ended; });
    return Napi::Boolean::New(info.Env(), ended);
  }

  Napi::Value counters(const Napi::CallbackInfo& info) {
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), bm::kLaneCounterCount);
    for (size_t i = 0; i < bm::kLaneCounterCount; ++i) result[i] = static_cast<double>(state_->lane->counter(i));
    return result;
  }

  Napi::Value volumeStats(const Napi::CallbackInfo& info) {
    return volumeStatsArray(info.Env(), state_->volume->stats());
  }

  std::shared_ptr<LaneState> state_;
};

}  // namespace

void initNbdLane(Napi::Env env, Napi::Object exports) { NbdLaneWrap::init(env, exports); }

}  // namespace bmjs
