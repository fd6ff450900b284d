// Helpers shared by the native tests: unique names for shared objects and files, removed again
// when the test ends (also when it fails).
#pragma once

#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <string>

#include "region.hpp"

namespace bmtest {

// A shared-memory name unique to this process and call; unlinked on destruction.
class SharedName {
 public:
  explicit SharedName(const char* purpose) {
    static std::atomic<int> counter{0};
    name_ = std::string("bm-test-") + purpose + "-" + std::to_string(getpid()) + "-" +
            std::to_string(counter++);
    bm::Region::unlink(bm::RegionKind::Shared, name_);
  }
  ~SharedName() { bm::Region::unlink(bm::RegionKind::Shared, name_); }
  SharedName(const SharedName&) = delete;
  SharedName& operator=(const SharedName&) = delete;
  const std::string& str() const { return name_; }

 private:
  std::string name_;
};

// A fresh temporary directory for file regions; removed (with its files) on destruction.
class TemporaryDirectory {
 public:
  TemporaryDirectory() {
    const char* base = std::getenv("TMPDIR");
    std::string pattern = std::string(base != nullptr ? base : "/tmp") + "/bm-test-XXXXXX";
    path_ = mkdtemp(pattern.data()) != nullptr ? pattern : std::string();
  }
  ~TemporaryDirectory() {
    if (!path_.empty()) {
      const std::string command = "rm -rf '" + path_ + "'";
      [[maybe_unused]] const int status = std::system(command.c_str());
    }
  }
  TemporaryDirectory(const TemporaryDirectory&) = delete;
  TemporaryDirectory& operator=(const TemporaryDirectory&) = delete;
  bool valid() const { return !path_.empty(); }
  std::string file(const char* name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

inline std::shared_ptr<bm::Region> anonymousRegion(uint64_t byteLength) {
  bm::RegionOptions options;
  options.kind = bm::RegionKind::Anonymous;
  options.byteLength = byteLength;
  return bm::Region::open(options);
}

inline std::shared_ptr<bm::Region> sharedRegion(const std::string& name, uint64_t byteLength,
                                                bool create, bool open) {
  bm::RegionOptions options;
  options.kind = bm::RegionKind::Shared;
  options.name = name;
  options.byteLength = byteLength;
  options.create = create;
  options.open = open;
  return bm::Region::open(options);
}

}  // namespace bmtest
