// Notes on the design
// -------------------
// The binding is the only code that includes napi.h. It turns the core's C++ objects into five
// JavaScript classes (Region, Volume, Bitmap, Journal, SnapshotStore) plus a few functions, and nothing more:
// roles, sequences and protocols live in TypeScript (src/storage), which checks every argument
// before it calls in. The binding checks them again, because a native call must never trust JS.
//
// Per environment (the main thread and every worker thread have their own), an Addon instance
// holds the JavaScript error class handed over at load (setErrorConstructor, as better-sqlite3
// does), the constructors needed to build wrappers from native code, and a Registry of every
// native object still open. A cleanup hook closes whatever the registry still holds when the
// environment is torn down (a worker that exits without closing its volumes must not leak their
// mappings).
//
// Lifetimes: each wrapper (an ObjectWrap) owns a std::shared_ptr to a Resource, which owns the
// core object. close() from JS, the wrapper's finalizer, and the cleanup hook all call
// Resource::requestClose(); the first one wins, the rest are no-ops. Async work (flush) holds
// its own shared_ptr to the Resource and counts itself in `pending`; the core object is
// released only when no work is pending, so a worker thread never races an unmap. All Resource
// and Registry methods run on the environment's JS thread only.
//
// Receivers: every method is a plain function on the prototype that checks the receiver's type
// tag before unwrapping it, so calling a Volume method on a Region, a plain object or undefined
// is a TypeError rather than a wild cast.
//
// Errors: bm::ArgumentError -> TypeError, bm::RangeError -> RangeError, bm::Error -> an instance
// of the registered error class with .code (and .errno when a system call failed).
#pragma once

#include <napi.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "errors.hpp"

namespace bmjs {

class Resource;

// The open native objects of one environment.
class Registry {
 public:
  void add(Resource* resource) { open_.insert(resource); }
  void remove(Resource* resource) { open_.erase(resource); }
  size_t openCount() const noexcept { return open_.size(); }
  // Requests close of every open resource (those with pending work close when it completes).
  void closeAll() noexcept;

 private:
  std::unordered_set<Resource*> open_;
};

// Owns one core object. See the design note for the close protocol.
class Resource {
 public:
  explicit Resource(std::shared_ptr<Registry> registry);
  virtual ~Resource();
  Resource(const Resource&) = delete;
  Resource& operator=(const Resource&) = delete;

  // True once close was requested: JS-visible state, later calls throw ERR_*_CLOSED.
  bool closed() const noexcept { return closeRequested_; }
  // True once the core object was released.
  bool released() const noexcept { return released_; }
  uint32_t pending() const noexcept { return pending_; }

  void beginWork() noexcept { ++pending_; }
  void endWork() noexcept;
  void requestClose() noexcept;

 protected:
  // Releases the core object. Called exactly once, never while work is pending.
  virtual void releaseCore() noexcept = 0;
  // Subclasses call this from their destructor (virtual calls do not reach them from ~Resource).
  void releaseFromDestructor() noexcept;

 private:
  void releaseOnce() noexcept;
  std::shared_ptr<Registry> registry_;
  uint32_t pending_ = 0;
  bool closeRequested_ = false;
  bool released_ = false;
};

// Per-environment state (napi instance data).
struct Addon {
  Napi::FunctionReference errorConstructor;
  Napi::FunctionReference bitmapConstructor;
  std::shared_ptr<Registry> registry = std::make_shared<Registry>();
  // Set just before the Bitmap constructor is invoked from native code to adopt a core bitmap
  // (a volume slot or a deserialized one); consumed by that constructor.
  void* pendingBitmap = nullptr;

  static Addon& of(napi_env env);
};

// ---- errors -------------------------------------------------------------------------------

// Builds an instance of the registered error class (or a plain Error with .code when none is
// registered yet).
Napi::Error makeBlockmirrorError(Napi::Env env, const char* code, const std::string& message,
                                 int errnoValue);
// Call inside a catch block: rethrows the current exception as the matching JS exception.
[[noreturn]] void rethrowAsJs(Napi::Env env);
[[noreturn]] void throwClosed(bm::Code code, const char* what);

[[noreturn]] void throwTypeError(napi_env env, const std::string& message);
[[noreturn]] void throwRangeError(napi_env env, const std::string& message);

// ---- arguments ----------------------------------------------------------------------------

constexpr double kMaxSafeInteger = 9007199254740991.0;

// A non-negative safe integer (TypeError when not a number, RangeError otherwise).
uint64_t argIndex(napi_env env, napi_value value, const char* name);
// A non-negative safe integer no larger than `max`.
uint64_t argIndexAtMost(napi_env env, napi_value value, const char* name, uint64_t max);
bool argBool(napi_env env, napi_value value, const char* name);
std::string argString(napi_env env, napi_value value, const char* name);
uint64_t argBigUint64(napi_env env, napi_value value, const char* name);

struct Bytes {
  uint8_t* data;
  size_t byteLength;
};
// A Uint8Array (Buffer included); TypeError for anything else.
Bytes argBytes(napi_env env, napi_value value, const char* name);
// A Float64Array of at least `minimumLength` elements.
double* argFloat64Array(napi_env env, napi_value value, const char* name, size_t minimumLength);

inline napi_value arg(const Napi::CallbackInfo& info, size_t index) {
  return info[index];
}

// ---- receivers ----------------------------------------------------------------------------

template <typename T>
T* unwrapThisValue(napi_env env, napi_value self) {
  napi_valuetype type = napi_undefined;
  if (self != nullptr && napi_typeof(env, self, &type) == napi_ok && type == napi_object) {
    bool tagged = false;
    if (napi_check_object_type_tag(env, self, &T::kTypeTag, &tagged) == napi_ok && tagged) {
      void* pointer = nullptr;
      if (napi_unwrap(env, self, &pointer) == napi_ok && pointer != nullptr) {
        return static_cast<T*>(pointer);
      }
    }
  }
  throwTypeError(env, std::string("receiver is not a native ") + T::kClassName);
}

template <typename T>
T* unwrapThis(const Napi::CallbackInfo& info) {
  return unwrapThisValue<T>(info.Env(), info.This());
}

// Unwraps an argument that must be an instance of T.
template <typename T>
T* unwrapArgument(napi_env env, napi_value value, const char* name) {
  napi_valuetype type = napi_undefined;
  if (value != nullptr && napi_typeof(env, value, &type) == napi_ok && type == napi_object) {
    bool tagged = false;
    if (napi_check_object_type_tag(env, value, &T::kTypeTag, &tagged) == napi_ok && tagged) {
      void* pointer = nullptr;
      if (napi_unwrap(env, value, &pointer) == napi_ok && pointer != nullptr) {
        return static_cast<T*>(pointer);
      }
    }
  }
  throwTypeError(env, std::string(name) + " must be a native " + T::kClassName);
}

// A prototype method: checks the receiver, calls the member, converts core exceptions.
template <typename T, Napi::Value (T::*Member)(const Napi::CallbackInfo&)>
Napi::Value method(const Napi::CallbackInfo& info) {
  try {
    T* self = unwrapThis<T>(info);
    return (self->*Member)(info);
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    rethrowAsJs(info.Env());
  }
}

template <typename T, Napi::Value (T::*Member)(const Napi::CallbackInfo&)>
Napi::PropertyDescriptor prototypeMethod(Napi::Env env, const char* name) {
  return Napi::PropertyDescriptor::Value(
      name, Napi::Function::New<method<T, Member>>(env, name),
      static_cast<napi_property_attributes>(napi_writable | napi_configurable));
}

// Defines a class with no native-dispatched members and puts `methods` on its prototype (class
// templates only take primitives, so the functions are added to the prototype object).
template <typename T>
Napi::Function defineClass(Napi::Env env, const char* name,
                           const std::initializer_list<Napi::PropertyDescriptor>& methods) {
  Napi::Function constructor = T::DefineClass(env, name, {});
  constructor.Get("prototype").template As<Napi::Object>().DefineProperties(methods);
  return constructor;
}

// A prototype method taking the raw napi arguments, for calls with many arguments (node-addon-
// api's CallbackInfo allocates when there are more than six). `Member` gets the receiver checked
// and the argument count; it reads the arguments itself.
template <typename T, napi_value (T::*Member)(napi_env, napi_callback_info, size_t)>
napi_value rawMethod(napi_env env, napi_callback_info callbackInfo) {
  try {
    size_t argc = 0;
    napi_value self = nullptr;
    napi_get_cb_info(env, callbackInfo, &argc, nullptr, &self, nullptr);
    T* wrap = unwrapThisValue<T>(env, self);
    return (wrap->*Member)(env, callbackInfo, argc);
  } catch (const Napi::Error& error) {
    error.ThrowAsJavaScriptException();
  } catch (...) {
    try {
      rethrowAsJs(env);
    } catch (const Napi::Error& error) {
      error.ThrowAsJavaScriptException();
    }
  }
  return nullptr;
}

template <typename T, napi_value (T::*Member)(napi_env, napi_callback_info, size_t)>
Napi::PropertyDescriptor rawPrototypeMethod(Napi::Env env, const char* name) {
  napi_value function = nullptr;
  napi_status status = napi_create_function(env, name, NAPI_AUTO_LENGTH, rawMethod<T, Member>, nullptr, &function);
  NAPI_THROW_IF_FAILED(env, status, Napi::PropertyDescriptor::Value(name, env.Undefined()));
  return Napi::PropertyDescriptor::Value(
      name, Napi::Value(env, function),
      static_cast<napi_property_attributes>(napi_writable | napi_configurable));
}

// Called from a wrapper's constructor once construction succeeded.
template <typename T>
void tagThis(const Napi::CallbackInfo& info) {
  info.This().As<Napi::Object>().TypeTag(&T::kTypeTag);
}

// ---- async work ---------------------------------------------------------------------------

// Runs `work` on the thread pool while the resource counts it as pending; resolves or rejects
// the returned promise on the JS thread. `work` must only touch core objects it holds itself
// (by shared_ptr), never the wrapper or any napi value.
class ResourceWorker : public Napi::AsyncWorker {
 public:
  ResourceWorker(Napi::Env env, std::shared_ptr<Resource> resource, const char* name,
                 std::function<void()> work);
  ~ResourceWorker() override;
  Napi::Promise promise() const { return deferred_.Promise(); }

 protected:
  void Execute() override;
  void OnOK() override;
  void OnError(const Napi::Error& error) override;

 private:
  void settle(Napi::Env env);
  std::shared_ptr<Resource> resource_;
  std::function<void()> work_;
  Napi::Promise::Deferred deferred_;
  enum class Failure { None, Core, Type, Range, Other } failure_ = Failure::None;
  std::string failedCode_;
  std::string failedMessage_;
  int failedErrno_ = 0;
};

// ---- class registration -------------------------------------------------------------------

void initRegion(Napi::Env env, Napi::Object exports);
void initVolume(Napi::Env env, Napi::Object exports);
void initBitmap(Napi::Env env, Napi::Object exports);
void initJournal(Napi::Env env, Napi::Object exports);
void initSnapshot(Napi::Env env, Napi::Object exports);
void initCrc32c(Napi::Env env, Napi::Object exports);
void initNbdSocket(Napi::Env env, Napi::Object exports);
void initNbdLane(Napi::Env env, Napi::Object exports);
Napi::Object initModule(Napi::Env env, Napi::Object exports);

}  // namespace bmjs
