// The native Volume class (see volume_wrap.cpp). Exposed so that the SnapshotStore wrapper can
// install itself on a volume given as a JS object.
#pragma once

#include <napi.h>

#include <memory>

#include "volume.hpp"

namespace bmjs {

// The core volume behind a JS Volume object. TypeError when `value` is not one,
// ERR_VOLUME_CLOSED when it is closed.
std::shared_ptr<bm::Volume> volumeFromObject(napi_env env, napi_value value, const char* name);

}  // namespace bmjs
