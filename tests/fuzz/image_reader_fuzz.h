// The fuzz target's body, callable from the corpus replay test.
#pragma once

#include <cstddef>
#include <cstdint>

#include "base/error.h"

namespace ferry::transport::fuzz {

// Decodes one fuzz input (layout in image_reader_fuzz.cpp). Returns the
// reader's verdict; aborts only on a codec bug (an accepted image that
// does not survive a re-encode).
Status decodeFuzzInput(const uint8_t *data, size_t size);

} // namespace ferry::transport::fuzz

extern "C" int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
