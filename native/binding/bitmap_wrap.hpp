// The native Bitmap class (see bitmap_wrap.cpp). Exposed so that the Volume wrapper can hand out
// its bitmap slots as Bitmap objects.
#pragma once

#include <napi.h>

#include <memory>

#include "bitmap.hpp"

namespace bmjs {

// A new JS Bitmap object wrapping `bitmap` (a volume slot or a deserialized bitmap).
Napi::Object newBitmapObject(Napi::Env env, std::shared_ptr<bm::Bitmap> bitmap);

}  // namespace bmjs
