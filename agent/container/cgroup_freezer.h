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
#include <string_view>
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
// ETIMEDOUT after `timeout`, with the cgroup thawed again. A timeout of
// zero checks once, right after asking. A task in uninterruptible sleep
// that is not freezable (an NFS or FUSE request, a D-state driver wait)
// holds a freeze back until it wakes: that is what the timeout is for.
// Freezing an already frozen cgroup succeeds at once.
Status freezeCgroup(const std::string &dir, std::chrono::milliseconds timeout);
// Idempotent: thawing a thawed cgroup succeeds. Returns at once; the
// tasks run again as the scheduler picks them.
Status thawCgroup(const std::string &dir);
// What the kernel reports now (v2: cgroup.events "frozen 1"; v1:
// freezer.state FROZEN; a v1 cgroup still FREEZING is not frozen).
Result<bool> isFrozen(const std::string &dir);

// The pids in `dir` (cgroup.procs), as this host sees them.
Result<std::vector<pid_t>> cgroupProcesses(const std::string &dir);

// --- The pure parts, apart for tests ---

// One line of /proc/<pid>/cgroup: "4:memory:/a/b" or "0::/a/b" (v2).
struct CgroupMembership {
	int hierarchy = 0;
	std::string controllers; // "freezer", "cpu,cpuacct", "name=systemd"; empty for v2
	std::string path;        // as the reader's cgroup namespace sees it
};
std::vector<CgroupMembership> parseProcCgroup(std::string_view text);

// A cgroup filesystem mount from /proc/self/mountinfo.
struct CgroupMount {
	std::string root;        // the cgroup mounted there ("/" unless a cgroup namespace)
	std::string mountPoint;  // octal escapes (\040) decoded
	bool v2 = false;         // cgroup2, else v1 "cgroup"
	std::string options;     // super options: "rw,freezer" for a v1 freezer
};
std::vector<CgroupMount> parseCgroupMounts(std::string_view mountinfo);

// The directories that may freeze a process with these memberships, best
// first: its v2 cgroup, then its v1 freezer cgroup. Root cgroups are left
// out (they may not be frozen); whether a directory has cgroup.freeze is
// for the caller to check.
std::vector<std::string> freezerCandidates(const std::vector<CgroupMembership> &memberships,
					   const std::vector<CgroupMount> &mounts);

} // namespace ferry::container
