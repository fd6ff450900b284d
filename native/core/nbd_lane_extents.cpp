// NbdLane's replies built from the volume's allocation map: structured reads with holes and
// BLOCK_STATUS of base:allocation (nbd_lane.hpp). They must be the bytes the event loop sends
// (src/nbd/transmission.ts readWithHoles and handleBlockStatus, src/nbd/extents.ts).
#include <algorithm>
#include <exception>
#include <vector>

#include "errors.hpp"
#include "nbd_lane.hpp"
#include "nbd_lane_internal.hpp"

namespace bm {

using namespace nbd_lane_internal;

namespace {

// One run of a structured read: data, or a hole (OFFSET_HOLE).
struct ReadRun {
  uint64_t byteOffset;
  uint64_t byteLength;
  bool hole;
};

// The base:allocation runs of [offset, offset + length): the allocation map's holes, each block
// of `granularity` that mixes data and hole counted as data (a block is a hole only if all of
// it is), neighbours of one kind merged; src/nbd/extents.ts allocationExtents.
std::vector<ReadRun> allocationRuns(const std::vector<RegionExtent>& map, uint64_t offset, uint64_t length, uint32_t granularity) {
  const uint64_t end = offset + length;
  std::vector<ReadRun> placed;
  uint64_t cursor = offset;
  for (const RegionExtent& extent : map) {  // sorted and disjoint (Region::allocationMap)
    const uint64_t start = std::max(extent.byteOffset, cursor);
    const uint64_t stop = std::min(extent.byteOffset + extent.byteLength, end);
    if (stop <= start) continue;
    if (start > cursor) placed.push_back({cursor, start - cursor, false});
    placed.push_back({start, stop - start, !extent.allocated});
    cursor = stop;
    if (cursor >= end) break;
  }
  if (cursor < end) placed.push_back({cursor, end - cursor, false});
  std::vector<ReadRun> aligned;
  if (granularity <= 1) {
    aligned = std::move(placed);
  } else {
    cursor = offset;
    size_t index = 0;
    while (cursor < end) {
      while (index < placed.size() && placed[index].byteOffset + placed[index].byteLength <= cursor) index++;
      BM_ASSERT(index < placed.size());  // placed covers [offset, end)
      const ReadRun& run = placed[index];
      const uint64_t stop = std::min(run.byteOffset + run.byteLength, end);
      if (stop == end || stop % granularity == 0) {
        aligned.push_back({cursor, stop - cursor, run.hole});
        cursor = stop;
        continue;
      }
      const uint64_t blockStart = stop - stop % granularity;
      if (blockStart > cursor) aligned.push_back({cursor, blockStart - cursor, run.hole});
      const uint64_t blockEnd = std::min(blockStart + granularity, end);
      bool hole = run.hole;
      for (size_t j = index + 1; j < placed.size() && placed[j].byteOffset < blockEnd; j++) hole = hole && placed[j].hole;
      aligned.push_back({blockStart, blockEnd - blockStart, hole});
      cursor = blockEnd;
    }
  }
  std::vector<ReadRun> runs;
  for (const ReadRun& run : aligned) {
    if (run.byteLength == 0) continue;
    if (!runs.empty() && runs.back().hole == run.hole) runs.back().byteLength += run.byteLength;
    else runs.push_back(run);
  }
  return runs;
}

// The runs of a structured read: allocationRuns with holes under kMinHoleChunkBytes folded into
// their neighbours as data (src/nbd/transmission.ts readWithHoles).
std::vector<ReadRun> readRuns(const std::vector<RegionExtent>& map, uint64_t offset, uint64_t length, uint32_t granularity) {
  std::vector<ReadRun> runs;
  for (const ReadRun& run : allocationRuns(map, offset, length, granularity)) {
    const bool hole = run.hole && run.byteLength >= kMinHoleChunkBytes;
    if (!runs.empty() && runs.back().hole == hole) runs.back().byteLength += run.byteLength;
    else runs.push_back({run.byteOffset, run.byteLength, hole});
  }
  return runs;
}

}  // namespace

void NbdLane::serveReadWithHoles(const Header& h) {
  std::vector<ReadRun> runs;
  try {
    runs = readRuns(volume_->allocationMap(h.offset, h.length), h.offset, h.length, options_.minimumBlockBytes);
  } catch (const std::exception&) {
    // No map: all of it as data (the main loop's answer too).
    runs.assign(1, ReadRun{h.offset, h.length, false});
  }
  size_t total = 0;
  for (const ReadRun& run : runs) total += run.hole ? kOffsetHoleChunkBytes : kOffsetDataPrefixBytes + run.byteLength;
  uint8_t* at = reserve(total);
  uint8_t* position = at;
  try {
    for (size_t i = 0; i < runs.size(); i++) {
      const ReadRun& run = runs[i];
      storeBe32(position, kStructuredReplyMagic);
      storeBe16(position + 4, i + 1 == runs.size() ? kReplyFlagDone : 0);
      storeBe16(position + 6, run.hole ? kReplyTypeOffsetHole : kReplyTypeOffsetData);
      storeCookie(position + 8, h.cookie);
      storeBe64(position + 20, run.byteOffset);
      if (run.hole) {
        storeBe32(position + 16, 12);
        storeBe32(position + 28, static_cast<uint32_t>(run.byteLength));
        position += kOffsetHoleChunkBytes;
      } else {
        storeBe32(position + 16, static_cast<uint32_t>(8 + run.byteLength));
        volume_->read(run.byteOffset, position + kOffsetDataPrefixBytes, run.byteLength);
        position += kOffsetDataPrefixBytes + run.byteLength;
      }
    }
  } catch (const std::exception&) {
    outUsed_ -= total;
    replyException(h);
    return;
  }
  count(kLaneBytesRead, h.length);
}

void NbdLane::serveBlockStatus(const Header& h) {
  std::vector<ReadRun> runs;
  try {
    runs = allocationRuns(volume_->allocationMap(h.offset, h.length), h.offset, h.length, options_.minimumBlockBytes);
  } catch (const std::exception&) {
    replyException(h);
    return;
  }
  // REQ_ONE: one descriptor; else at most kMaxExtents (the client asks again for the rest).
  const size_t descriptors = std::max<size_t>(1, std::min(runs.size(), (h.flags & kFlagReqOne) != 0 ? size_t{1} : kMaxExtents));
  uint8_t* at = reserve(kChunkHeaderBytes + 4 + 8 * descriptors);
  storeBe32(at, kStructuredReplyMagic);
  storeBe16(at + 4, kReplyFlagDone);
  storeBe16(at + 6, kReplyTypeBlockStatus);
  storeCookie(at + 8, h.cookie);
  storeBe32(at + 16, static_cast<uint32_t>(4 + 8 * descriptors));
  storeBe32(at + 20, options_.allocationContextId);
  for (size_t i = 0; i < descriptors; i++) {
    const bool any = i < runs.size();
    storeBe32(at + 24 + 8 * i, static_cast<uint32_t>(any ? runs[i].byteLength : h.length));
    storeBe32(at + 28 + 8 * i, any && runs[i].hole ? kStateHoleZero : 0);
  }
}

}  // namespace bm
