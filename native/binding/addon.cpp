// Module entry, per-environment state, error conversion and argument checks shared by every
// wrapper. See addon.hpp for the design note.
#include "addon.hpp"
#include "disk_wrap.hpp"
#include "diversion_wrap.hpp"

#include <cmath>
#include <cstdio>
#include <utility>

#include "region.hpp"

namespace bmjs {

// ---- registry and resources ---------------------------------------------------------------

void Registry::closeAll() noexcept {
  // requestClose() removes the resource from the set, so iterate over a copy.
  std::vector<Resource*> open(open_.begin(), open_.end());
  for (Resource* resource : open) resource->requestClose();
}

Resource::Resource(std::shared_ptr<Registry> registry) : registry_(std::move(registry)) {
  registry_->add(this);
}

Resource::~Resource() {
  // A subclass destructor has already released its core (releaseFromDestructor); this only
  // makes sure the registry never holds a dangling pointer.
  if (!released_) registry_->remove(this);
}

void Resource::endWork() noexcept {
  BM_ASSERT(pending_ > 0);
  --pending_;
  if (closeRequested_ && pending_ == 0) releaseOnce();
}

void Resource::requestClose() noexcept {
  closeRequested_ = true;
  if (pending_ == 0) releaseOnce();
}

void Resource::releaseFromDestructor() noexcept {
  closeRequested_ = true;
  releaseOnce();
}

void Resource::releaseOnce() noexcept {
  if (released_) return;
  released_ = true;
  registry_->remove(this);
  releaseCore();
}

Addon& Addon::of(napi_env env) {
  Addon* addon = Napi::Env(env).GetInstanceData<Addon>();
  BM_ASSERT(addon != nullptr);
  return *addon;
}

// ---- errors -------------------------------------------------------------------------------

Napi::Error makeBlockmirrorError(Napi::Env env, const char* code, const std::string& message,
                                 int errnoValue) {
  Addon& addon = Addon::of(env);
  if (!addon.errorConstructor.IsEmpty()) {
    Napi::Value options = env.Undefined();
    if (errnoValue != 0) {
      Napi::Object object = Napi::Object::New(env);
      object.Set("errno", Napi::Number::New(env, errnoValue));
      options = object;
    }
    try {
      Napi::Object error = addon.errorConstructor.New(
          {Napi::String::New(env, code), Napi::String::New(env, message), options});
      return Napi::Error(env, error);
    } catch (const Napi::Error&) {
      // A broken constructor must not hide the original error: fall through to a plain one.
    }
  }
  Napi::Error error = Napi::Error::New(env, message);
  error.Set("code", Napi::String::New(env, code));
  if (errnoValue != 0) error.Set("errno", Napi::Number::New(env, errnoValue));
  return error;
}

void rethrowAsJs(Napi::Env env) {
  try {
    throw;
  } catch (const Napi::Error&) {
    throw;
  } catch (const bm::Error& error) {
    throw makeBlockmirrorError(env, bm::codeName(error.code()), error.what(), error.errnoValue());
  } catch (const bm::ArgumentError& error) {
    throw Napi::TypeError::New(env, error.what());
  } catch (const bm::RangeError& error) {
    throw Napi::RangeError::New(env, error.what());
  } catch (const std::bad_alloc&) {
    throw Napi::Error::New(env, "out of memory");
  } catch (const std::exception& error) {
    throw Napi::Error::New(env, error.what());
  } catch (...) {
    throw Napi::Error::New(env, "unknown native exception");
  }
}

void throwClosed(bm::Code code, const char* what) {
  throw bm::Error(code, std::string(what) + " is closed");
}

void throwTypeError(napi_env env, const std::string& message) {
  throw Napi::TypeError::New(env, message);
}

void throwRangeError(napi_env env, const std::string& message) {
  throw Napi::RangeError::New(env, message);
}

// ---- arguments ----------------------------------------------------------------------------

namespace {

const char* typeName(napi_env env, napi_value value) {
  napi_valuetype type = napi_undefined;
  if (value == nullptr || napi_typeof(env, value, &type) != napi_ok) return "undefined";
  switch (type) {
    case napi_undefined: return "undefined";
    case napi_null: return "null";
    case napi_boolean: return "boolean";
    case napi_number: return "number";
    case napi_string: return "string";
    case napi_symbol: return "symbol";
    case napi_object: return "object";
    case napi_function: return "function";
    case napi_external: return "external";
    case napi_bigint: return "bigint";
  }
  return "unknown";
}

std::string formatNumber(double value) {
  char text[64];
  std::snprintf(text, sizeof text, "%.17g", value);
  return text;
}

}  // namespace

uint64_t argIndex(napi_env env, napi_value value, const char* name) {
  return argIndexAtMost(env, value, name, static_cast<uint64_t>(kMaxSafeInteger));
}

uint64_t argIndexAtMost(napi_env env, napi_value value, const char* name, uint64_t max) {
  double number = 0;
  if (value == nullptr || napi_get_value_double(env, value, &number) != napi_ok) {
    throwTypeError(env, std::string(name) + " must be a number (got " + typeName(env, value) + ")");
  }
  if (!(number >= 0) || number > kMaxSafeInteger || std::floor(number) != number) {
    throwRangeError(env, std::string(name) + " must be a non-negative safe integer (got " +
                             formatNumber(number) + ")");
  }
  const uint64_t result = static_cast<uint64_t>(number);
  if (result > max) {
    throwRangeError(env, std::string(name) + " must be at most " + std::to_string(max) +
                             " (got " + std::to_string(result) + ")");
  }
  return result;
}

bool argBool(napi_env env, napi_value value, const char* name) {
  bool result = false;
  if (value == nullptr || napi_get_value_bool(env, value, &result) != napi_ok) {
    throwTypeError(env, std::string(name) + " must be a boolean (got " + typeName(env, value) + ")");
  }
  return result;
}

std::string argString(napi_env env, napi_value value, const char* name) {
  constexpr size_t kMaxStringBytes = 4096;
  size_t length = 0;
  if (value == nullptr || napi_get_value_string_utf8(env, value, nullptr, 0, &length) != napi_ok) {
    throwTypeError(env, std::string(name) + " must be a string (got " + typeName(env, value) + ")");
  }
  if (length > kMaxStringBytes) {
    throwRangeError(env, std::string(name) + " must be at most " +
                             std::to_string(kMaxStringBytes) + " bytes long");
  }
  std::string result(length, '\0');
  size_t copied = 0;
  napi_get_value_string_utf8(env, value, result.data(), length + 1, &copied);
  result.resize(copied);
  return result;
}

uint64_t argBigUint64(napi_env env, napi_value value, const char* name) {
  uint64_t result = 0;
  bool lossless = false;
  if (value == nullptr || napi_get_value_bigint_uint64(env, value, &result, &lossless) != napi_ok) {
    throwTypeError(env, std::string(name) + " must be a bigint (got " + typeName(env, value) + ")");
  }
  if (!lossless) {
    throwRangeError(env, std::string(name) + " must be a bigint in [0, 2^64)");
  }
  return result;
}

Bytes argBytes(napi_env env, napi_value value, const char* name) {
  static uint8_t empty[1];
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (value == nullptr ||
      napi_get_typedarray_info(env, value, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_uint8_array) {
    throwTypeError(env, std::string(name) + " must be a Uint8Array (got " + typeName(env, value) + ")");
  }
  if (data == nullptr) data = empty;
  return Bytes{static_cast<uint8_t*>(data), length};
}

double* argFloat64Array(napi_env env, napi_value value, const char* name, size_t minimumLength) {
  napi_typedarray_type type;
  size_t length = 0;
  void* data = nullptr;
  if (value == nullptr ||
      napi_get_typedarray_info(env, value, &type, &length, &data, nullptr, nullptr) != napi_ok ||
      type != napi_float64_array) {
    throwTypeError(env, std::string(name) + " must be a Float64Array (got " + typeName(env, value) + ")");
  }
  if (length < minimumLength) {
    throwRangeError(env, std::string(name) + " must have at least " + std::to_string(minimumLength) +
                             " elements (got " + std::to_string(length) + ")");
  }
  return static_cast<double*>(data);
}

// ---- async work ---------------------------------------------------------------------------

ResourceWorker::ResourceWorker(Napi::Env env, std::shared_ptr<Resource> resource, const char* name,
                               std::function<void()> work)
    : Napi::AsyncWorker(env, name),
      resource_(std::move(resource)),
      work_(std::move(work)),
      deferred_(Napi::Promise::Deferred::New(env)) {
  resource_->beginWork();
}

// Runs on the JS thread after OnOK (or when the environment drops the work at teardown), so the
// resource is released here at the latest.
ResourceWorker::~ResourceWorker() { resource_->endWork(); }

void ResourceWorker::Execute() {
  try {
    work_();
  } catch (const bm::Error& error) {
    failure_ = Failure::Core;
    failedCode_ = bm::codeName(error.code());
    failedMessage_ = error.what();
    failedErrno_ = error.errnoValue();
  } catch (const bm::ArgumentError& error) {
    failure_ = Failure::Type;
    failedMessage_ = error.what();
  } catch (const bm::RangeError& error) {
    failure_ = Failure::Range;
    failedMessage_ = error.what();
  } catch (const std::exception& error) {
    failure_ = Failure::Other;
    failedMessage_ = error.what();
  } catch (...) {
    failure_ = Failure::Other;
    failedMessage_ = "unknown native exception";
  }
}

void ResourceWorker::OnOK() { settle(Env()); }

void ResourceWorker::OnError(const Napi::Error& error) { deferred_.Reject(error.Value()); }

void ResourceWorker::settle(Napi::Env env) {
  switch (failure_) {
    case Failure::None:
      deferred_.Resolve(env.Undefined());
      return;
    case Failure::Core:
      deferred_.Reject(makeBlockmirrorError(env, failedCode_.c_str(), failedMessage_, failedErrno_).Value());
      return;
    case Failure::Type:
      deferred_.Reject(Napi::TypeError::New(env, failedMessage_).Value());
      return;
    case Failure::Range:
      deferred_.Reject(Napi::RangeError::New(env, failedMessage_).Value());
      return;
    case Failure::Other:
      deferred_.Reject(Napi::Error::New(env, failedMessage_).Value());
      return;
  }
}

// ---- module -------------------------------------------------------------------------------

namespace {

Napi::Value setErrorConstructor(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (info.Length() < 1 || !info[0].IsFunction()) {
    throw Napi::TypeError::New(env, "error constructor must be a function");
  }
  Addon::of(env).errorConstructor = Napi::Persistent(info[0].As<Napi::Function>());
  return env.Undefined();
}

Napi::Value codeNames(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array names = Napi::Array::New(env);
  uint32_t index = 0;
  for (const char* const* name = bm::codeNames(); *name != nullptr; ++name) {
    names.Set(index++, Napi::String::New(env, *name));
  }
  return names;
}

Napi::Value openResourceCount(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(Addon::of(info.Env()).registry->openCount()));
}

Napi::Value pageSize(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(bm::Region::pageSize()));
}

void cleanupHook(void* argument) {
  auto* registry = static_cast<std::shared_ptr<Registry>*>(argument);
  (*registry)->closeAll();
  delete registry;
}

Napi::Object init(Napi::Env env, Napi::Object exports) {
  auto* addon = new Addon();
  env.SetInstanceData<Addon>(addon);
  // The hook gets its own reference to the registry: instance data may be finalized first.
  napi_status status =
      napi_add_env_cleanup_hook(env, cleanupHook, new std::shared_ptr<Registry>(addon->registry));
  BM_ASSERT(status == napi_ok);

  exports.Set("setErrorConstructor", Napi::Function::New<setErrorConstructor>(env, "setErrorConstructor"));
  exports.Set("codeNames", Napi::Function::New<codeNames>(env, "codeNames"));
  exports.Set("openResourceCount", Napi::Function::New<openResourceCount>(env, "openResourceCount"));
  exports.Set("pageSize", Napi::Function::New<pageSize>(env, "pageSize"));
  initRegion(env, exports);
  initVolume(env, exports);
  initBitmap(env, exports);
  initJournal(env, exports);
  initSnapshot(env, exports);
  initDisk(env, exports);
  initRaid(env, exports);
  initDiversion(env, exports);
  initCrc32c(env, exports);
  initNbdSocket(env, exports);
  initNbdLane(env, exports);
  return exports;
}

}  // namespace

Napi::Object initModule(Napi::Env env, Napi::Object exports) { return init(env, exports); }

}  // namespace bmjs

static Napi::Object InitBlockmirror(Napi::Env env, Napi::Object exports) {
  return bmjs::initModule(env, exports);
}

NODE_API_MODULE(blockmirror, InitBlockmirror)
