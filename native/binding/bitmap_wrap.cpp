// Notes on the design
// -------------------
// The native Bitmap class over bm::Bitmap. A Bitmap object either owns its storage (created with
// `new Bitmap(bitCount, granularityBytes)` or by deserialize) or is a view of a volume's bitmap
// slot (made by the Volume wrapper through newBitmapObject). Both hold the core bitmap by
// shared_ptr; closing the object drops this process's view, never the slot itself.
//
// Indices are bit numbers (non-negative safe integers); findNextSet/findNextClear answer -1 when
// nothing is found, a value rather than an error.
#include "bitmap_wrap.hpp"

#include <memory>
#include <vector>

#include "addon.hpp"

namespace bmjs {
namespace {

class BitmapResource final : public Resource {
 public:
  BitmapResource(std::shared_ptr<Registry> registry, std::shared_ptr<bm::Bitmap> bitmap)
      : Resource(std::move(registry)), core(std::move(bitmap)) {}
  ~BitmapResource() override { releaseFromDestructor(); }
  std::shared_ptr<bm::Bitmap> core;

 protected:
  void releaseCore() noexcept override {
    // A slot view shares the core bitmap with nobody else in this process, so closing it only
    // drops the region reference; the slot's bits stay in the volume.
    if (core) core->close();
  }
};

// The biggest bitmap this binding will allocate: 2^32 bits (512 MiB of words).
constexpr uint64_t kMaxBitCount = uint64_t{1} << 32;

class BitmapWrap final : public Napi::ObjectWrap<BitmapWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d4269'746d6170ULL, 0x5e0a77c3'd1f2a902ULL};
  static constexpr const char* kClassName = "Bitmap";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<BitmapWrap>(
        env, "Bitmap",
        {
            prototypeMethod<BitmapWrap, &BitmapWrap::info>(env, "info"),
            prototypeMethod<BitmapWrap, &BitmapWrap::set>(env, "set"),
            prototypeMethod<BitmapWrap, &BitmapWrap::clear>(env, "clear"),
            prototypeMethod<BitmapWrap, &BitmapWrap::test>(env, "test"),
            prototypeMethod<BitmapWrap, &BitmapWrap::setRange>(env, "setRange"),
            prototypeMethod<BitmapWrap, &BitmapWrap::clearRange>(env, "clearRange"),
            prototypeMethod<BitmapWrap, &BitmapWrap::markBytes>(env, "markBytes"),
            prototypeMethod<BitmapWrap, &BitmapWrap::setAll>(env, "setAll"),
            prototypeMethod<BitmapWrap, &BitmapWrap::clearAll>(env, "clearAll"),
            prototypeMethod<BitmapWrap, &BitmapWrap::count>(env, "count"),
            prototypeMethod<BitmapWrap, &BitmapWrap::findNextSet>(env, "findNextSet"),
            prototypeMethod<BitmapWrap, &BitmapWrap::findNextClear>(env, "findNextClear"),
            prototypeMethod<BitmapWrap, &BitmapWrap::orMerge>(env, "orMerge"),
            prototypeMethod<BitmapWrap, &BitmapWrap::swap>(env, "swap"),
            prototypeMethod<BitmapWrap, &BitmapWrap::copyFrom>(env, "copyFrom"),
            prototypeMethod<BitmapWrap, &BitmapWrap::serialize>(env, "serialize"),
            prototypeMethod<BitmapWrap, &BitmapWrap::deserializeInto>(env, "deserializeInto"),
            prototypeMethod<BitmapWrap, &BitmapWrap::close>(env, "close"),
        });
    Addon::of(env).bitmapConstructor = Napi::Persistent(constructor);
    exports.Set("Bitmap", constructor);
    exports.Set("deserializeBitmap", Napi::Function::New<deserializeBitmap>(env, "deserializeBitmap"));
  }

  // new Bitmap(bitCount, granularityBytes), or new Bitmap() from newBitmapObject.
  explicit BitmapWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<BitmapWrap>(info) {
    napi_env env = info.Env();
    Addon& addon = Addon::of(env);
    try {
      std::shared_ptr<bm::Bitmap> bitmap;
      if (info.Length() == 0 && addon.pendingBitmap != nullptr) {
        bitmap = *static_cast<std::shared_ptr<bm::Bitmap>*>(addon.pendingBitmap);
        addon.pendingBitmap = nullptr;
      } else {
        const uint64_t bitCount = argIndexAtMost(env, arg(info, 0), "bitCount", kMaxBitCount);
        if (bitCount == 0) throwRangeError(env, "bitCount must be at least 1");
        const uint64_t granularityBytes = argIndex(env, arg(info, 1), "granularityBytes");
        bitmap = std::make_shared<bm::Bitmap>(bitCount, granularityBytes);
      }
      resource_ = std::make_shared<BitmapResource>(addon.registry, std::move(bitmap));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<BitmapWrap>(info);
  }

  ~BitmapWrap() override {
    if (resource_) resource_->requestClose();
  }

  static BitmapWrap* unwrapArg(napi_env env, napi_value value, const char* name) {
    return unwrapArgument<BitmapWrap>(env, value, name);
  }

  bm::Bitmap& core() const {
    if (resource_->closed()) throwClosed(bm::Code::ERR_BITMAP_CLOSED, "bitmap");
    return *resource_->core;
  }

 private:
  static Napi::Value deserializeBitmap(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    try {
      const Bytes bytes = argBytes(env, arg(info, 0), "bytes");
      std::shared_ptr<bm::Bitmap> bitmap = bm::Bitmap::deserialize(bytes.data, bytes.byteLength);
      return newBitmapObject(info.Env(), std::move(bitmap));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
  }

  uint64_t argBit(napi_env env, napi_value value, const char* name) {
    const uint64_t index = argIndex(env, value, name);
    const uint64_t bitCount = core().bitCount();
    if (index >= bitCount) {
      throwRangeError(env, std::string(name) + " (" + std::to_string(index) +
                               ") must be less than bitCount (" + std::to_string(bitCount) + ")");
    }
    return index;
  }

  void argBitRange(const Napi::CallbackInfo& info, uint64_t* first, uint64_t* count) {
    napi_env env = info.Env();
    *first = argIndex(env, arg(info, 0), "first");
    *count = argIndex(env, arg(info, 1), "count");
    const uint64_t bitCount = core().bitCount();
    if (*first > bitCount || *count > bitCount - *first) {
      throwRangeError(env, "first + count (" + std::to_string(*first) + " + " + std::to_string(*count) +
                               ") exceeds bitCount (" + std::to_string(bitCount) + ")");
    }
  }

  // [bitCount, granularityBytes]
  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bm::Bitmap& bitmap = *resource_->core;
    Napi::Array result = Napi::Array::New(env, 2);
    result.Set(0u, Napi::Number::New(env, static_cast<double>(bitmap.bitCount())));
    result.Set(1u, Napi::Number::New(env, static_cast<double>(bitmap.granularityBytes())));
    return result;
  }

  Napi::Value set(const Napi::CallbackInfo& info) {
    const uint64_t index = argBit(info.Env(), arg(info, 0), "index");
    return Napi::Boolean::New(info.Env(), core().set(index));
  }

  Napi::Value clear(const Napi::CallbackInfo& info) {
    const uint64_t index = argBit(info.Env(), arg(info, 0), "index");
    return Napi::Boolean::New(info.Env(), core().clear(index));
  }

  Napi::Value test(const Napi::CallbackInfo& info) {
    const uint64_t index = argBit(info.Env(), arg(info, 0), "index");
    return Napi::Boolean::New(info.Env(), core().test(index));
  }

  Napi::Value setRange(const Napi::CallbackInfo& info) {
    uint64_t first = 0, count = 0;
    argBitRange(info, &first, &count);
    core().setRange(first, count);
    return info.Env().Undefined();
  }

  Napi::Value clearRange(const Napi::CallbackInfo& info) {
    uint64_t first = 0, count = 0;
    argBitRange(info, &first, &count);
    core().clearRange(first, count);
    return info.Env().Undefined();
  }

  Napi::Value markBytes(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t byteOffset = argIndex(env, arg(info, 0), "byteOffset");
    const uint64_t byteLength = argIndex(env, arg(info, 1), "byteLength");
    bm::Bitmap& bitmap = core();
    // bitCount <= 2^32 and granularity <= 2^30, so this cannot overflow.
    const uint64_t coveredBytes = bitmap.bitCount() * bitmap.granularityBytes();
    if (byteOffset > coveredBytes || byteLength > coveredBytes - byteOffset) {
      throwRangeError(env, "byteOffset + byteLength (" + std::to_string(byteOffset) + " + " +
                               std::to_string(byteLength) + ") exceeds the covered bytes (" +
                               std::to_string(coveredBytes) + ")");
    }
    bitmap.markBytes(byteOffset, byteLength);
    return info.Env().Undefined();
  }

  Napi::Value setAll(const Napi::CallbackInfo& info) {
    core().setAll();
    return info.Env().Undefined();
  }

  Napi::Value clearAll(const Napi::CallbackInfo& info) {
    core().clearAll();
    return info.Env().Undefined();
  }

  Napi::Value count(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(core().count()));
  }

  Napi::Value findNext(const Napi::CallbackInfo& info, bool set) {
    napi_env env = info.Env();
    const uint64_t from = info.Length() > 0 && !info[0].IsUndefined() ? argIndex(env, arg(info, 0), "from") : 0;
    bm::Bitmap& bitmap = core();
    if (from >= bitmap.bitCount()) return Napi::Number::New(env, -1);
    const uint64_t found = set ? bitmap.findNextSet(from) : bitmap.findNextClear(from);
    return Napi::Number::New(env, found == bm::Bitmap::kNone ? -1.0 : static_cast<double>(found));
  }

  Napi::Value findNextSet(const Napi::CallbackInfo& info) { return findNext(info, true); }
  Napi::Value findNextClear(const Napi::CallbackInfo& info) { return findNext(info, false); }

  bm::Bitmap& otherCore(const Napi::CallbackInfo& info) {
    BitmapWrap* other = unwrapArg(info.Env(), arg(info, 0), "other");
    return other->core();
  }

  Napi::Value orMerge(const Napi::CallbackInfo& info) {
    bm::Bitmap& self = core();
    bm::Bitmap& other = otherCore(info);
    if (&other != &self) self.orMerge(other);
    return info.Env().Undefined();
  }

  Napi::Value swap(const Napi::CallbackInfo& info) {
    bm::Bitmap& self = core();
    bm::Bitmap& other = otherCore(info);
    if (&other != &self) self.swap(other);
    return info.Env().Undefined();
  }

  Napi::Value copyFrom(const Napi::CallbackInfo& info) {
    bm::Bitmap& self = core();
    bm::Bitmap& other = otherCore(info);
    if (&other != &self) self.copyFrom(other);
    return info.Env().Undefined();
  }

  Napi::Value serialize(const Napi::CallbackInfo& info) {
    const std::vector<uint8_t> bytes = core().serialize();
    return Napi::Buffer<uint8_t>::Copy(info.Env(), bytes.data(), bytes.size());
  }

  Napi::Value deserializeInto(const Napi::CallbackInfo& info) {
    const Bytes bytes = argBytes(info.Env(), arg(info, 0), "bytes");
    core().deserializeInto(bytes.data, bytes.byteLength);
    return info.Env().Undefined();
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    resource_->requestClose();
    return info.Env().Undefined();
  }

  std::shared_ptr<BitmapResource> resource_;
};

}  // namespace

Napi::Object newBitmapObject(Napi::Env env, std::shared_ptr<bm::Bitmap> bitmap) {
  Addon& addon = Addon::of(env);
  addon.pendingBitmap = &bitmap;
  try {
    Napi::Object object = addon.bitmapConstructor.New({});
    addon.pendingBitmap = nullptr;
    return object;
  } catch (...) {
    addon.pendingBitmap = nullptr;
    throw;
  }
}

void initBitmap(Napi::Env env, Napi::Object exports) { BitmapWrap::init(env, exports); }

}  // namespace bmjs
