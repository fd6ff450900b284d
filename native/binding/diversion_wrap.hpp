// The native WorkVolume class (diversion_wrap.cpp). workVolumeFromObject lets the RaidGroup
// wrapper lay a work volume behind a volume's extent.
#pragma once

#include <napi.h>

#include <memory>

#include "backup_diversion.hpp"
#include "diversion.hpp"

namespace bmjs {

std::shared_ptr<bm::WorkVolume> workVolumeFromObject(napi_env env, napi_value value, const char* name);
std::shared_ptr<bm::BackupVolume> backupVolumeFromObject(napi_env env, napi_value value, const char* name);
void initDiversion(Napi::Env env, Napi::Object exports);

}  // namespace bmjs
