// The native Journal class (see journal_wrap.cpp). Exposed so that the Volume wrapper can attach a
// journal given as a JS object.
#pragma once

#include <napi.h>

#include <memory>

#include "journal.hpp"

namespace bmjs {

// The core journal behind a JS Journal object. TypeError when `value` is not one,
// ERR_JOURNAL_CLOSED when it is closed.
std::shared_ptr<bm::Journal> journalFromObject(napi_env env, napi_value value, const char* name);

}  // namespace bmjs
