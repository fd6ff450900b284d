// Notes on the design
// -------------------
// The native help the NBD server needs to serve connections on worker threads (src/nbd/worker*.ts,
// docs/nbd-workers.md). Node cannot move a net.Socket to a worker, and a worker cannot be handed a
// Volume object, so both travel as file descriptors of this process:
//   - nbdDupSocket(fd): a close-on-exec duplicate of an accepted socket's fd. The main thread
//     destroys its own handle (closing its fd) without reading; the duplicate keeps the
//     connection open and the worker wraps it in a net.Socket of its own loop.
//   - nbdDupRegionFd(volume): a close-on-exec duplicate of the fd behind a volume's region
//     (a memfd for 'memory' volumes, the shm object or the file otherwise). The core keeps that
//     fd private, so it is found by what the mapping of the volume's data shows in
//     /proc/self/maps (device and inode) and matched against /proc/self/fd. A worker opens
//     /proc/self/fd/<dup> as a file region: the same pages, whatever the backing, immune to a
//     shared name or a path being unlinked and reused meanwhile.
//   - nbdVolumeWorkerInfo(volume): what decides whether a worker may serve the volume at all:
//     a journal attached (this object only: a worker's writes would not be journaled), an
//     interceptor installed or required (snapshots, RAID diversion), a backing store.
//   - nbdCloseFd(fd): closes a duplicate that never reached its worker.
// Ownership: every fd these return belongs to the caller until it passes it on. Errors: a bad
// argument is a TypeError/RangeError; a failed system call is an Error naming the call and
// errno (the caller falls back to the main loop, nothing is lost).
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <napi.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "addon.hpp"
#include "volume_wrap.hpp"

namespace bmjs {
namespace {

int argFd(const Napi::CallbackInfo& info, size_t index) {
  return static_cast<int>(argIndexAtMost(info.Env(), arg(info, index), "fd", INT32_MAX));
}

[[noreturn]] void throwSystem(Napi::Env env, const std::string& what, int errnoValue) {
  Napi::Error error = Napi::Error::New(env, what + ": " + std::strerror(errnoValue));
  error.Set("errno", Napi::Number::New(env, errnoValue));
  throw error;
}

int dupCloexec(Napi::Env env, int fd) {
  const int copy = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (copy < 0) throwSystem(env, "fcntl(F_DUPFD_CLOEXEC)", errno);
  return copy;
}

Napi::Value nbdDupSocket(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  const int fd = argFd(info, 0);
  struct stat status {};
  if (fstat(fd, &status) != 0) throwSystem(env, "fstat of fd " + std::to_string(fd), errno);
  if (!S_ISSOCK(status.st_mode)) throwTypeError(env, "fd " + std::to_string(fd) + " is not a socket");
  return Napi::Number::New(env, dupCloexec(env, fd));
}

Napi::Value nbdCloseFd(const Napi::CallbackInfo& info) {
  const int fd = argFd(info, 0);
  // EINTR still closes the fd on Linux; anything else means it was not open: nothing to do.
  ::close(fd);
  return info.Env().Undefined();
}

// The device and inode of the mapping that contains `address` (false when none does).
bool mappingIdentity(const void* address, unsigned& major, unsigned& minor, unsigned long& inode) {
  FILE* maps = std::fopen("/proc/self/maps", "re");
  if (maps == nullptr) return false;
  const auto target = reinterpret_cast<uintptr_t>(address);
  char line[4096];
  bool found = false;
  while (std::fgets(line, sizeof line, maps) != nullptr) {
    unsigned long start = 0, end = 0, offset = 0;
    char permissions[8];
    if (std::sscanf(line, "%lx-%lx %7s %lx %x:%x %lu", &start, &end, permissions, &offset, &major,
                    &minor, &inode) != 7) {
      continue;
    }
    if (target >= start && target < end) {
      found = inode != 0;
      break;
    }
  }
  std::fclose(maps);
  return found;
}

Napi::Value nbdDupRegionFd(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<bm::Volume> volume = volumeFromObject(env, arg(info, 0), "volume");
  unsigned major = 0, minor = 0;
  unsigned long inode = 0;
  if (!mappingIdentity(volume->data(), major, minor, inode)) {
    throwSystem(env, "no file mapping holds the volume's data in /proc/self/maps", ENOENT);
  }
  DIR* directory = opendir("/proc/self/fd");
  if (directory == nullptr) throwSystem(env, "opendir(/proc/self/fd)", errno);
  const int directoryFd = dirfd(directory);
  int match = -1;
  while (dirent* entry = readdir(directory)) {
    char* end = nullptr;
    const long fd = std::strtol(entry->d_name, &end, 10);
    if (end == entry->d_name || *end != '\0' || fd == directoryFd) continue;
    struct stat status {};
    if (fstat(static_cast<int>(fd), &status) != 0 || !S_ISREG(status.st_mode)) continue;
    if (status.st_ino == inode && ::major(status.st_dev) == major && ::minor(status.st_dev) == minor) {
      match = static_cast<int>(fd);
      break;
    }
  }
  closedir(directory);
  if (match < 0) throwSystem(env, "no fd of this process holds the volume's region", ENOENT);
  return Napi::Number::New(env, dupCloexec(env, match));
}

// [journalAttached, interceptorInstalled, interceptorRequired, backingStore]
Napi::Value nbdVolumeWorkerInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  std::shared_ptr<bm::Volume> volume = volumeFromObject(env, arg(info, 0), "volume");
  Napi::Array result = Napi::Array::New(env, 4);
  try {
    result.Set(0u, Napi::Boolean::New(env, volume->journal() != nullptr));
    result.Set(1u, Napi::Boolean::New(env, volume->interceptor() != nullptr));
    result.Set(2u, Napi::Boolean::New(env, volume->interceptorRequired()));
    result.Set(3u, Napi::Boolean::New(env, volume->backingStore() != nullptr));
  } catch (const Napi::Error&) {
    throw;
  } catch (...) {
    rethrowAsJs(env);
  }
  return result;
}

}  // namespace

void initNbdSocket(Napi::Env env, Napi::Object exports) {
  exports.Set("nbdDupSocket", Napi::Function::New<nbdDupSocket>(env, "nbdDupSocket"));
  exports.Set("nbdCloseFd", Napi::Function::New<nbdCloseFd>(env, "nbdCloseFd"));
  exports.Set("nbdDupRegionFd", Napi::Function::New<nbdDupRegionFd>(env, "nbdDupRegionFd"));
  exports.Set("nbdVolumeWorkerInfo", Napi::Function::New<nbdVolumeWorkerInfo>(env, "nbdVolumeWorkerInfo"));
}

}  // namespace bmjs
