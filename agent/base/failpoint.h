// Failpoints: named places where a test can make the agent fail or wait,
// so that every rollback path can be driven deterministically against
// real processes (tests/e2e). Off unless FERRY_FAILPOINTS is set.
//
//   FERRY_FAILPOINTS="destination.restore=error,source.dump=sleep(2000)"
//
// Actions:
//   error        hitFailpoint() returns an Error (EIO) naming the failpoint
//   sleep(MS)    hitFailpoint() waits MS milliseconds, then carries on
//   corrupt      the call site damages what it produces (see its comment)
//
// The variable is read once, at the first call. Failpoints cost one
// relaxed atomic load when none is set. Operators never set this: it
// exists for tests, and ferryd logs a warning when it is set.
#pragma once

#include <optional>
#include <string_view>

#include "error.h"

namespace ferry {

enum class FailAction { Error, Sleep, Corrupt };

// The action configured for `name`, if any (a Sleep has already slept).
std::optional<FailAction> failpoint(std::string_view name);

// Sleeps or fails as configured; ok when `name` is not set.
Status hitFailpoint(std::string_view name);

// Whether any failpoint is configured (for ferryd's start-up warning).
bool failpointsActive();

} // namespace ferry
