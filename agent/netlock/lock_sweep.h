// Finding and removing ferry's lock tables without the FlowLock that made
// them: after a crash (sweep), or when the journal says a migration ended
// but its lock may still be installed (removeLock).
//
// Only tables that pass the ownership rule of lock_table.h are listed or
// removed: family inet, name "ferry_<id>", and a ferry comment naming the
// same id. Anything else in the namespace, including a table called
// "ferry_something" without ferry's comment, is left alone.
//
// Tables are removed by their kernel handle, taken from the listing, so a
// table recreated under the same name in between is never removed by
// mistake; if a listed table disappears before the removal (ENOENT), the
// listing is taken again.
#pragma once

#include <cstdint>
#include <ctime>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace ferry::netlock {

struct LockInfo {
	std::string migrationId;
	std::string table;      // "ferry_<id>", family inet
	uint64_t handle = 0;    // the kernel's handle of the table
	std::time_t created = 0; // from the table comment
};

// Ferry's lock tables in the namespace `netns` (an openNetns() spec).
Result<std::vector<LockInfo>> listLocks(std::string_view netns);

// Removes the lock of one migration. ENOENT when the namespace holds no
// ferry lock for it (a foreign table of the same name does not count).
Status removeLock(std::string_view netns, std::string_view migrationId);

// Removes, in one transaction, every ferry lock in `netns` whose migration
// id is not in `liveIds`, and returns the ids it removed. Precondition: the
// caller passes every migration that may be locking in this namespace,
// including one that is starting; its table would be removed otherwise.
Result<std::vector<std::string>> sweep(std::string_view netns, std::span<const std::string> liveIds);

} // namespace ferry::netlock
