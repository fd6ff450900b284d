// The native Disk and RaidGroup classes (disk_wrap.cpp, raid_wrap.cpp). diskFromObject is exposed
// so that the RaidGroup wrapper can take its member disks as JS objects.
#pragma once

#include <napi.h>

#include <memory>

#include "disk.hpp"

namespace bmjs {

// The core disk behind a JS Disk object. TypeError when `value` is not one, ERR_DISK_CLOSED
// when it is closed.
std::shared_ptr<bm::Disk> diskFromObject(napi_env env, napi_value value, const char* name);

void initDisk(Napi::Env env, Napi::Object exports);
void initRaid(Napi::Env env, Napi::Object exports);

}  // namespace bmjs
