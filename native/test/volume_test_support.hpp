// Helpers shared by the Volume tests (volume_test.cpp, volume_recording_test.cpp): a volume and
// a journal on anonymous regions.
#pragma once

#include <cstdint>
#include <memory>

#include "journal.hpp"
#include "test_support.hpp"
#include "volume.hpp"

namespace bmtest {

inline constexpr uint64_t kMiB = 1024 * 1024;

inline std::unique_ptr<bm::Volume> makeVolume(uint64_t capacityBytes, bool strict = false,
                                              uint32_t blockSize = 4096) {
  auto region = bmtest::anonymousRegion(bm::Volume::regionBytesFor(capacityBytes));
  bm::VolumeOptions options;
  options.capacityBytes = capacityBytes;
  options.blockSize = blockSize;
  options.strict = strict;
  return bm::Volume::create(region, options);
}

inline std::shared_ptr<bm::Journal> makeJournal(uint64_t capacityBytes, uint64_t maxRecordBytes) {
  bm::JournalOptions options;
  options.capacityBytes = capacityBytes;
  options.maxRecordBytes = maxRecordBytes;
  auto region = bmtest::anonymousRegion(bm::Journal::regionBytesFor(capacityBytes));
  return bm::Journal::create(region, options);
}

}  // namespace bmtest
