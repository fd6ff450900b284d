// Notes on the design
// -------------------
// The native Journal class over bm::Journal, which lives in a Region of its own (anonymous,
// shared by name, or a file). `new Journal(kind, name, create, capacityBytes, maxRecordBytes)`
// maps the region and formats it (create) or opens an existing journal in it. A journal this
// call created is unlinked again when formatting fails, so a failed create leaves no name behind.
//
// read() copies records out through scratch arrays kept by the wrapper (grown on demand, bounded
// by kMaxReadRecords and the ring size) and returns them packed: a Float64Array of fields, a
// BigUint64Array of volume ids and one Buffer holding every payload; TypeScript slices it.
// At least one record is returned when one exists, even if its payload alone exceeds maxBytes,
// so a reader always makes progress (a second, single-record read takes it).
#include "journal_wrap.hpp"

#include <algorithm>
#include <memory>
#include <vector>

#include "addon.hpp"
#include "region.hpp"

namespace bmjs {
namespace {

constexpr size_t kMaxReadRecords = 65536;
constexpr size_t kRecordFieldCount = 8;

class JournalResource final : public Resource {
 public:
  JournalResource(std::shared_ptr<Registry> registry, std::shared_ptr<bm::Journal> journal,
                  bm::RegionKind kind, std::string name)
      : Resource(std::move(registry)), core(std::move(journal)), kind(kind), name(std::move(name)) {}
  ~JournalResource() override { releaseFromDestructor(); }
  std::shared_ptr<bm::Journal> core;
  bm::RegionKind kind;
  std::string name;

 protected:
  void releaseCore() noexcept override {
    if (core) core->close();
  }
};

class JournalWrap final : public Napi::ObjectWrap<JournalWrap> {
 public:
  static constexpr napi_type_tag kTypeTag = {0x626d4a6f'75726e6cULL, 0x17c04be2'8a6d3f03ULL};
  static constexpr const char* kClassName = "Journal";

  static void init(Napi::Env env, Napi::Object exports) {
    Napi::Function constructor = defineClass<JournalWrap>(
        env, "Journal",
        {
            prototypeMethod<JournalWrap, &JournalWrap::info>(env, "info"),
            prototypeMethod<JournalWrap, &JournalWrap::append>(env, "append"),
            prototypeMethod<JournalWrap, &JournalWrap::read>(env, "read"),
            prototypeMethod<JournalWrap, &JournalWrap::readPacked>(env, "readPacked"),
            prototypeMethod<JournalWrap, &JournalWrap::release>(env, "release"),
            prototypeMethod<JournalWrap, &JournalWrap::stats>(env, "stats"),
            prototypeMethod<JournalWrap, &JournalWrap::headSequence>(env, "headSequence"),
            prototypeMethod<JournalWrap, &JournalWrap::nextSequence>(env, "nextSequence"),
            prototypeMethod<JournalWrap, &JournalWrap::pendingIntents>(env, "pendingIntents"),
            prototypeMethod<JournalWrap, &JournalWrap::clearPendingIntents>(env, "clearPendingIntents"),
            prototypeMethod<JournalWrap, &JournalWrap::close>(env, "close"),
        });
    exports.Set("Journal", constructor);
  }

  // new Journal(kind, name, create, capacityBytes, maxRecordBytes, id)
  explicit JournalWrap(const Napi::CallbackInfo& info) : Napi::ObjectWrap<JournalWrap>(info) {
    napi_env env = info.Env();
    try {
      const auto kind = static_cast<bm::RegionKind>(argIndexAtMost(env, arg(info, 0), "kind", 2));
      std::string name = argString(env, arg(info, 1), "name");
      const bool create = argBool(env, arg(info, 2), "create");
      std::shared_ptr<bm::Journal> journal;
      if (create) {
        bm::JournalOptions options;
        options.capacityBytes = argIndex(env, arg(info, 3), "capacityBytes");
        options.maxRecordBytes = argIndex(env, arg(info, 4), "maxRecordBytes");
        if (!info[5].IsUndefined()) options.id = argIndex(env, arg(info, 5), "id");
        if (options.capacityBytes < bm::Journal::kMinCapacityBytes) {
          throwRangeError(env, "capacityBytes must be at least " + std::to_string(bm::Journal::kMinCapacityBytes));
        }
        if (options.maxRecordBytes == 0 || options.maxRecordBytes > options.capacityBytes / 4) {
          throwRangeError(env, "maxRecordBytes must be in [1, capacityBytes / 4]");
        }
        bm::RegionOptions regionOptions;
        regionOptions.kind = kind;
        regionOptions.name = name;
        regionOptions.byteLength = bm::Journal::regionBytesFor(options.capacityBytes);
        regionOptions.create = true;
        std::shared_ptr<bm::Region> region = bm::Region::open(regionOptions);
        try {
          journal = bm::Journal::create(region, options);
        } catch (...) {
          region->close();
          if (kind != bm::RegionKind::Anonymous) bm::Region::unlink(kind, name);
          throw;
        }
      } else {
        if (kind == bm::RegionKind::Anonymous) throwTypeError(env, "an anonymous journal cannot be opened");
        bm::RegionOptions regionOptions;
        regionOptions.kind = kind;
        regionOptions.name = name;
        regionOptions.create = false;
        regionOptions.open = true;
        journal = bm::Journal::open(bm::Region::open(regionOptions));
      }
      resource_ = std::make_shared<JournalResource>(Addon::of(env).registry, std::move(journal), kind,
                                                    std::move(name));
    } catch (const Napi::Error&) {
      throw;
    } catch (...) {
      rethrowAsJs(info.Env());
    }
    tagThis<JournalWrap>(info);
  }

  ~JournalWrap() override {
    if (resource_) resource_->requestClose();
  }

  bm::Journal& core() const {
    if (resource_->closed()) throwClosed(bm::Code::ERR_JOURNAL_CLOSED, "journal");
    return *resource_->core;
  }

  std::shared_ptr<bm::Journal> shared() const {
    core();
    return resource_->core;
  }

 private:
  // [capacityBytes, maxRecordBytes, kind, name, id]
  Napi::Value info(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const bm::Journal& journal = *resource_->core;
    Napi::Array result = Napi::Array::New(env, 5);
    result.Set(4u, Napi::Number::New(env, static_cast<double>(journal.id())));
    result.Set(0u, Napi::Number::New(env, static_cast<double>(journal.capacityBytes())));
    result.Set(1u, Napi::Number::New(env, static_cast<double>(journal.maxRecordBytes())));
    result.Set(2u, Napi::Number::New(env, static_cast<double>(resource_->kind)));
    result.Set(3u, Napi::String::New(env, resource_->name));
    return result;
  }

  // append(kind, volumeId, byteOffset, byteLength, data | undefined, flags) -> sequence | 0
  Napi::Value append(const Napi::CallbackInfo& info) {
    napi_env env = info.Env();
    const uint64_t kind = argIndexAtMost(env, arg(info, 0), "kind", 4);
    if (kind == 0) throwRangeError(env, "kind must be 1 (write), 2 (zero), 3 (trim) or 4 (marker)");
    const uint64_t volumeId = argBigUint64(env, arg(info, 1), "volumeId");
    const uint64_t byteOffset = argIndex(env, arg(info, 2), "byteOffset");
    const uint64_t byteLength = argIndexAtMost(env, arg(info, 3), "byteLength", UINT32_MAX);
    Bytes data{nullptr, 0};
    if (!info[4].IsUndefined() && !info[4].IsNull()) data = argBytes(env, arg(info, 4), "data");
    const uint64_t flags = argIndexAtMost(env, arg(info, 5), "flags", UINT16_MAX);
    bm::Journal& journal = core();
    if (data.byteLength > journal.maxRecordBytes()) {
      throw bm::Error(bm::Code::ERR_JOURNAL_RECORD_TOO_LARGE,
                      "data (" + std::to_string(data.byteLength) + " bytes) exceeds maxRecordBytes (" +
                          std::to_string(journal.maxRecordBytes()) + ")");
    }
    const uint64_t sequence =
        journal.append(static_cast<bm::RecordKind>(kind), volumeId, byteOffset, static_cast<uint32_t>(byteLength),
                       data.byteLength > 0 ? data.data : nullptr, static_cast<uint32_t>(data.byteLength),
                       static_cast<uint16_t>(flags));
    return Napi::Number::New(env, static_cast<double>(sequence));
  }

  // read(fromSequence, maxRecords, maxBytes) -> [fields: Float64Array, volumeIds: BigUint64Array,
  // payload: Buffer]; fields per record: sequence, byteOffset, byteLength, kind, flags, dataCrc,
  // payloadOffset, payloadBytes.
  Napi::Value read(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint64_t fromSequence = argIndex(env, arg(info, 0), "fromSequence");
    const uint64_t maxRecords = argIndexAtMost(env, arg(info, 1), "maxRecords", kMaxReadRecords);
    const uint64_t maxBytes = argIndex(env, arg(info, 2), "maxBytes");
    if (maxRecords == 0) throwRangeError(env, "maxRecords must be at least 1");
    bm::Journal& journal = core();
    // Scratch big enough for maxBytes (never more than the ring holds) and for the largest record.
    const uint64_t payloadCapacity = std::min<uint64_t>(maxBytes, journal.capacityBytes());
    if (records_.size() < maxRecords) records_.resize(maxRecords);
    const uint64_t scratchBytes = std::max<uint64_t>(payloadCapacity, journal.maxRecordBytes());
    if (payload_.size() < scratchBytes) payload_.resize(scratchBytes);
    size_t count = journal.readFrom(fromSequence, maxRecords, records_.data(), payload_.data(), payloadCapacity);
    if (count == 0 && fromSequence < journal.nextSequence()) {
      // The first record alone exceeds maxBytes: return it anyway, so a reader makes progress.
      count = journal.readFrom(fromSequence, 1, records_.data(), payload_.data(), journal.maxRecordBytes());
    }
    uint64_t payloadUsed = 0;
    Napi::Float64Array fields = Napi::Float64Array::New(env, count * kRecordFieldCount);
    Napi::ArrayBuffer idBuffer = Napi::ArrayBuffer::New(env, count * sizeof(uint64_t));
    auto* ids = static_cast<uint64_t*>(idBuffer.Data());
    for (size_t i = 0; i < count; ++i) {
      const bm::JournalRecord& record = records_[i];
      double* out = fields.Data() + i * kRecordFieldCount;
      out[0] = static_cast<double>(record.sequence);
      out[1] = static_cast<double>(record.byteOffset);
      out[2] = static_cast<double>(record.byteLength);
      out[3] = static_cast<double>(static_cast<uint16_t>(record.kind));
      out[4] = static_cast<double>(record.flags);
      out[5] = static_cast<double>(record.dataCrc);
      out[6] = static_cast<double>(record.payloadOffset);
      out[7] = static_cast<double>(record.payloadBytes);
      ids[i] = record.volumeId;
      payloadUsed = std::max<uint64_t>(payloadUsed, record.payloadOffset + record.payloadBytes);
    }
    napi_value volumeIds;
    napi_status status = napi_create_typedarray(env, napi_biguint64_array, count, idBuffer, 0, &volumeIds);
    NAPI_THROW_IF_FAILED(env, status, Napi::Value());
    Napi::Array result = Napi::Array::New(env, 3);
    result.Set(0u, fields);
    result.Set(1u, Napi::Value(env, volumeIds));
    result.Set(2u, Napi::Buffer<uint8_t>::Copy(env, payload_.data(), payloadUsed));
    return result;
  }

  // readPacked(fromSequence, maxRecords, maxDataBytes, prefixBytes, gapBytes, target?) -> [fields:
  // Float64Array (as read(), payloadOffset counted from the buffer's start), buffer: Buffer,
  // usedBytes: the bytes of it that hold something]. The
  // buffer is the caller's to keep: `prefixBytes` free at its start, then per record `gapBytes`
  // free and its data, copied once from the ring (no scratch). It is sized from the ring bytes
  // after fromSequence, so it is at most a record header per record larger than what it holds.
  // `target`, a Buffer of the caller's (a reused send buffer), is filled instead when it is at
  // least that size; otherwise a new buffer is made as without it (the caller sees which).
  // `verify` (7th, default true): false skips the data CRC check of each copy (Journal::readFrom).
  Napi::Value readPacked(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const uint64_t fromSequence = argIndex(env, arg(info, 0), "fromSequence");
    const uint64_t maxRecords = argIndexAtMost(env, arg(info, 1), "maxRecords", kMaxReadRecords);
    const uint64_t maxDataBytes = argIndex(env, arg(info, 2), "maxDataBytes");
    const uint64_t prefixBytes = argIndexAtMost(env, arg(info, 3), "prefixBytes", 65536);
    const uint64_t gapBytes = argIndexAtMost(env, arg(info, 4), "gapBytes", 64);
    if (maxRecords == 0) throwRangeError(env, "maxRecords must be at least 1");
    bm::Journal& journal = core();
    if (records_.size() < maxRecords) records_.resize(maxRecords);
    // Each record takes at least a 48-byte header in the ring, and gapBytes <= 64: room for the
    // gaps of every record is ringBytes + 16 per record at most.
    const uint64_t ringBytes = journal.ringBytesFrom(fromSequence);
    const uint64_t dataLimit = maxDataBytes;
    uint64_t capacity = std::min<uint64_t>(ringBytes + 16 * maxRecords, dataLimit + gapBytes * maxRecords);
    Napi::Buffer<uint8_t> buffer;
    const Napi::Value target = info[5];
    if (!target.IsUndefined() && !target.IsNull()) {
      if (!target.IsBuffer()) throwTypeError(env, "target must be a Buffer");
      buffer = target.As<Napi::Buffer<uint8_t>>();
      if (buffer.Length() < prefixBytes + capacity) buffer = Napi::Buffer<uint8_t>::New(env, prefixBytes + capacity);
    } else {
      buffer = Napi::Buffer<uint8_t>::New(env, prefixBytes + capacity);
    }
    const Napi::Value verifyArg = info[6];
    if (!verifyArg.IsUndefined() && !verifyArg.IsBoolean()) throwTypeError(env, "verify must be a boolean");
    const bool verify = verifyArg.IsUndefined() || verifyArg.As<Napi::Boolean>().Value();
    size_t count = journal.readFrom(fromSequence, maxRecords, records_.data(), buffer.Data() + prefixBytes, capacity,
                                    static_cast<uint32_t>(gapBytes), dataLimit, verify);
    if (count == 0 && fromSequence < journal.nextSequence()) {
      // The first record alone exceeds maxDataBytes: return it anyway, so a reader makes progress.
      capacity = gapBytes + journal.maxRecordBytes();
      buffer = Napi::Buffer<uint8_t>::New(env, prefixBytes + capacity);
      count = journal.readFrom(fromSequence, 1, records_.data(), buffer.Data() + prefixBytes, capacity,
                               static_cast<uint32_t>(gapBytes), journal.maxRecordBytes(), verify);
    }
    uint64_t used = prefixBytes;
    Napi::Float64Array fields = Napi::Float64Array::New(env, count * kRecordFieldCount);
    for (size_t i = 0; i < count; ++i) {
      const bm::JournalRecord& record = records_[i];
      double* out = fields.Data() + i * kRecordFieldCount;
      out[0] = static_cast<double>(record.sequence);
      out[1] = static_cast<double>(record.byteOffset);
      out[2] = static_cast<double>(record.byteLength);
      out[3] = static_cast<double>(static_cast<uint16_t>(record.kind));
      out[4] = static_cast<double>(record.flags);
      out[5] = static_cast<double>(record.dataCrc);
      out[6] = static_cast<double>(prefixBytes + record.payloadOffset);
      out[7] = static_cast<double>(record.payloadBytes);
      used = std::max<uint64_t>(used, prefixBytes + record.payloadOffset + record.payloadBytes);
    }
    Napi::Array result = Napi::Array::New(env, 3);
    result.Set(0u, fields);
    result.Set(1u, buffer);
    result.Set(2u, Napi::Number::New(env, static_cast<double>(used)));
    return result;
  }

  Napi::Value release(const Napi::CallbackInfo& info) {
    const uint64_t through = argIndex(info.Env(), arg(info, 0), "throughSequence");
    return Napi::Number::New(info.Env(), static_cast<double>(core().release(through)));
  }

  // Float64Array: headSequence, nextSequence, recordCount, usedBytes, capacityBytes,
  // maxRecordBytes, appendCount, fullCount.
  Napi::Value stats(const Napi::CallbackInfo& info) {
    const bm::JournalStats stats = core().stats();
    Napi::Float64Array result = Napi::Float64Array::New(info.Env(), 8);
    result[0] = static_cast<double>(stats.headSequence);
    result[1] = static_cast<double>(stats.nextSequence);
    result[2] = static_cast<double>(stats.recordCount);
    result[3] = static_cast<double>(stats.usedBytes);
    result[4] = static_cast<double>(stats.capacityBytes);
    result[5] = static_cast<double>(stats.maxRecordBytes);
    result[6] = static_cast<double>(stats.appendCount);
    result[7] = static_cast<double>(stats.fullCount);
    return result;
  }

  Napi::Value headSequence(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(core().headSequence()));
  }

  Napi::Value nextSequence(const Napi::CallbackInfo& info) {
    return Napi::Number::New(info.Env(), static_cast<double>(core().nextSequence()));
  }

  // [[volumeId (bigint), byteOffset, byteLength, kind], ...]: what open() found in the intent area
  Napi::Value pendingIntents(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    const std::vector<bm::JournalIntent>& intents = core().pendingIntents();
    Napi::Array result = Napi::Array::New(env, intents.size());
    for (uint32_t i = 0; i < intents.size(); i++) {
      const bm::JournalIntent& intent = intents[i];
      Napi::Array entry = Napi::Array::New(env, 4);
      entry.Set(0u, Napi::BigInt::New(env, intent.volumeId));
      entry.Set(1u, Napi::Number::New(env, static_cast<double>(intent.byteOffset)));
      entry.Set(2u, Napi::Number::New(env, static_cast<double>(intent.byteLength)));
      entry.Set(3u, Napi::Number::New(env, static_cast<double>(intent.kind)));
      result.Set(i, entry);
    }
    return result;
  }

  Napi::Value clearPendingIntents(const Napi::CallbackInfo& info) {
    core().clearPendingIntents();
    return info.Env().Undefined();
  }

  Napi::Value close(const Napi::CallbackInfo& info) {
    resource_->requestClose();
    return info.Env().Undefined();
  }

  std::shared_ptr<JournalResource> resource_;
  std::vector<bm::JournalRecord> records_;
  std::vector<uint8_t> payload_;
};

}  // namespace

std::shared_ptr<bm::Journal> journalFromObject(napi_env env, napi_value value, const char* name) {
  return unwrapArgument<JournalWrap>(env, value, name)->shared();
}

void initJournal(Napi::Env env, Napi::Object exports) { JournalWrap::init(env, exports); }

}  // namespace bmjs
