// Freezing a container through its cgroup: cgroup v2 `cgroup.freeze`, or
// the v1 freezer controller's `freezer.state`, whichever holds the
// process. This host runs a hybrid hierarchy (v1 freezer, v2 without
// controllers), so both are real here.
//
//   FERRY_TRY_ASSIGN(std::string dir, freezerCgroupOf(containerInitPid));
//   FERRY_TRY(freezeCgroup(dir, 2s));    // returns once every task is frozen
//   ...
//   FERRY_TRY(thawCgroup(dir));
//
// A frozen task can still be killed with SIGKILL (v2, and v1 on this
// kernel once thawed: destroy thaws after the kill).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "base/error.h"

namespace ferry::container {

// The cgroup directory that freezes `pid`: its v2 cgroup when that has
// cgroup.freeze (and is not the root), else its v1 freezer cgroup. ENOENT
// when neither exists (no freezer on this host, or `pid` is in a root cgroup
// that may not be frozen).
Result<std::string> freezerCgroupOf(pid_t pid);

// Freezes every task in `dir` and waits until the kernel reports it
// frozen (v2: cgroup.events "frozen 1"; v1: freezer.state FROZEN).
// ETIMEDOUT after `timeout`, with the cgroup thawed again.
Status freezeCgroup(const std::string &dir, std::chrono::milliseconds timeout);
Status thawCgroup(const std::string &dir);
Result<bool> isFrozen(const std::string &dir);

// The pids in `dir` (cgroup.procs), as this host sees them.
Result<std::vector<pid_t>> cgroupProcesses(const std::string &dir);

} // namespace ferry::container
