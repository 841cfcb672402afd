// Base64 (RFC 4648 §4, the standard alphabet with '=' padding).
//
// Used where binary travels inside JSON: the workload's state blob in the
// handoff `ready` message and in FERRY_MANIFEST (docs/workloads.md).
//
// Decoding is strict, because the input comes from other processes: only
// the standard alphabet, padding exactly as the encoder writes it, no
// whitespace or line breaks, and the unused bits of the last character must
// be zero. So every blob has one encoding, and a decoded blob encodes back
// to the same text.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "error.h"

namespace ferry {

std::string base64Encode(std::span<const uint8_t> bytes);
std::string base64Encode(std::string_view bytes);

// The bytes `text` encodes, as a string (it may hold any byte, NUL too).
// Error (code EINVAL) naming the offset of the first offending character.
Result<std::string> base64Decode(std::string_view text);

} // namespace ferry
