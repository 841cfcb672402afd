// Freezing the source workload's processes with SIGSTOP, and ending them.
//
// A process is named by its pid *and* its start time (field 22 of
// /proc/PID/stat), so that a pid reused after the workload died is never
// stopped, continued or killed by mistake, even from a journal read back
// after an agent restart.
//
// SIGSTOP freezes a process at an arbitrary point. That is enough for the
// kernel side of its connections (which is all ferry moves), not for what
// it holds in memory: see docs/workloads.md. Containers are frozen through
// their cgroup instead (issue 5).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"

namespace ferry::migration {

struct ProcessRef {
	pid_t pid = 0;
	uint64_t startTime = 0; // clock ticks since boot

	std::string toString() const; // "1234@5678"
	static Result<ProcessRef> parse(std::string_view text);
	friend bool operator==(const ProcessRef &, const ProcessRef &) = default;
};

// The process `pid` as it is now. ESRCH if it does not exist.
Result<ProcessRef> processRef(pid_t pid);
// Whether the process still exists and is the same one (same start time).
bool isSameProcess(const ProcessRef &process);

// Sends SIGSTOP to each process and waits until all of them are stopped
// (state 'T'), or fails with ETIMEDOUT. Processes that are gone are an
// error (ESRCH): the workload changed under the migration.
Status stopProcesses(const std::vector<ProcessRef> &processes, std::chrono::milliseconds timeout);
// SIGCONT to each process that is still the same; never fails.
void continueProcesses(const std::vector<ProcessRef> &processes);
// SIGKILL to each process that is still the same, then waits (bounded) for
// them to be gone, so that their fds are closed when this returns.
void killProcesses(const std::vector<ProcessRef> &processes, std::chrono::milliseconds timeout);

// Waits up to `timeout` for the process to end (or become a zombie).
// Returns whether it did.
bool waitUntilGone(const ProcessRef &process, std::chrono::milliseconds timeout);

// "1@2 3@4" and back, for the journal.
std::string formatProcesses(const std::vector<ProcessRef> &processes);
Result<std::vector<ProcessRef>> parseProcesses(std::string_view text);

} // namespace ferry::migration
