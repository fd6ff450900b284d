// Notes on the design
// -------------------
// Operating errors of the native core. Every failure a caller can meet at run time (a closed
// object, a full journal, a bad checksum, a failed system call) is a bm::Error carrying one of
// the stable codes below. The TypeScript side has the same list (src/errors.ts); a test checks
// that the two lists are equal, so a code is never added on one side only.
//
// Caller mistakes (a range outside the volume, a misaligned offset on a strict volume, a bad
// argument) are bm::ArgumentError / bm::RangeError; the binding turns them into the JavaScript
// TypeError / RangeError. Broken invariants are BM_ASSERT, which aborts: a store that would
// ship or keep wrong bytes must stop.
#pragma once

#include <cstdio>
#include <cstdlib>
#include <stdexcept>
#include <string>

namespace bm {

// X-macro: one line per operating error code. Order is not significant; names are stable.
#define BM_ERROR_CODES(X)                                                                        \
  X(ERR_REGION_CLOSED)                                                                           \
  X(ERR_REGION_EXISTS)                                                                           \
  X(ERR_REGION_NOT_FOUND)                                                                        \
  X(ERR_REGION_OPEN)                                                                             \
  X(ERR_REGION_MAP)                                                                              \
  X(ERR_REGION_TRIM)                                                                             \
  X(ERR_REGION_FLUSH)                                                                            \
  X(ERR_REGION_TOO_SMALL)                                                                        \
  X(ERR_VOLUME_CLOSED)                                                                           \
  X(ERR_VOLUME_BAD_SUPERBLOCK)                                                                   \
  X(ERR_BITMAP_CLOSED)                                                                           \
  X(ERR_BITMAP_CHECKSUM)                                                                         \
  X(ERR_BITMAP_GEOMETRY)                                                                         \
  X(ERR_BITMAP_EXISTS)                                                                           \
  X(ERR_BITMAP_NOT_FOUND)                                                                        \
  X(ERR_BITMAP_LIMIT)                                                                            \
  X(ERR_BITMAP_FORMAT)                                                                           \
  X(ERR_JOURNAL_CLOSED)                                                                          \
  X(ERR_JOURNAL_CHECKSUM)                                                                        \
  X(ERR_JOURNAL_RELEASED)                                                                        \
  X(ERR_JOURNAL_NOT_YET)                                                                         \
  X(ERR_JOURNAL_RECORD_TOO_LARGE)                                                                \
  X(ERR_JOURNAL_BAD_HEADER)                                                                      \
  X(ERR_SNAPSHOT_CLOSED)                                                                         \
  X(ERR_SNAPSHOT_EXISTS)                                                                         \
  X(ERR_SNAPSHOT_NOT_FOUND)                                                                      \
  X(ERR_SNAPSHOT_LIMIT)                                                                          \
  X(ERR_SNAPSHOT_INVALID)                                                                        \
  X(ERR_SNAPSHOT_BAD_HEADER)                                                                     \
  X(ERR_SNAPSHOT_ATTACHED)                                                                       \
  X(ERR_SNAPSHOT_DETACHED)                                                                       \
  X(ERR_DISK_CLOSED)                                                                             \
  X(ERR_DISK_BAD_HEADER)                                                                         \
  X(ERR_DISK_FAULT_LIMIT)                                                                        \
  X(ERR_DISK_IO)                                                                                 \
  X(ERR_RAID_CLOSED)                                                                             \
  X(ERR_RAID_BAD_HEADER)                                                                         \
  X(ERR_RAID_READ_FAILED)                                                                        \
  X(ERR_RAID_WRITE_FAILED)                                                                       \
  X(ERR_RAID_MEMBER_STATE)                                                                       \
  X(ERR_RAID_NO_SPACE)                                                                           \
  X(ERR_RAID_EXTENT_EXISTS)                                                                      \
  X(ERR_RAID_EXTENT_NOT_FOUND)                                                                   \
  X(ERR_DIVERSION_BAD_HEADER)                                                                    \
  X(ERR_DIVERSION_MAINS_FULL)                                                                    \
  X(ERR_DIVERSION_STATE)                                                                         \
  X(ERR_DIVERSION_IO_FAILED)

enum class Code {
#define BM_ENUM(name) name,
  BM_ERROR_CODES(BM_ENUM)
#undef BM_ENUM
};

const char* codeName(Code code) noexcept;
// All code names in declaration order, terminated by nullptr.
const char* const* codeNames() noexcept;

// An operating error with a stable code. `errnoValue` is the system errno when a system call
// failed, else 0.
class Error : public std::runtime_error {
 public:
  Error(Code code, const std::string& message, int errnoValue = 0);
  Code code() const noexcept { return code_; }
  int errnoValue() const noexcept { return errno_; }

 private:
  Code code_;
  int errno_;
};

// A caller mistake of type (maps to TypeError).
class ArgumentError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A caller mistake of range or alignment (maps to RangeError).
class RangeError : public std::out_of_range {
 public:
  using std::out_of_range::out_of_range;
};

[[noreturn]] void assertFailed(const char* expression, const char* file, int line) noexcept;

}  // namespace bm

// Broken invariant: print and abort. Always on, also in release builds.
#define BM_ASSERT(expression) \
  ((expression) ? static_cast<void>(0) : ::bm::assertFailed(#expression, __FILE__, __LINE__))
