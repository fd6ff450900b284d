// The native Volume class (see volume_wrap.cpp). Exposed so that the SnapshotStore wrapper can
// install itself on a volume given as a JS object, and the NBD lane to open its own.
#pragma once

#include <napi.h>

#include <memory>

#include "lane_gate.hpp"
#include "volume.hpp"

namespace bmjs {

// The core volume behind a JS Volume object. TypeError when `value` is not one,
// ERR_VOLUME_CLOSED when it is closed.
std::shared_ptr<bm::Volume> volumeFromObject(napi_env env, napi_value value, const char* name);

// The lane gate of a JS Volume object (setLaneGate), null when it has none.
std::shared_ptr<bm::LaneGate> laneGateFromObject(napi_env env, napi_value value, const char* name);

// A volume's stats as JS sees them (VOLUME_STATS_KEYS order, src/storage/volume.ts).
Napi::Float64Array volumeStatsArray(Napi::Env env, const bm::VolumeStats& stats);

}  // namespace bmjs
