// launchWorkload: starts the workload on the destination with its migrated
// connections as inherited file descriptors (docs/workloads.md, "Native
// handoff"): the systemd socket-activation convention plus FERRY_MANIFEST.
//
//   LaunchRequest request;
//   request.argv = {"/usr/bin/demo", "--serve"};
//   request.netnsFd = targetNetns.get();
//   request.manifestDirectory = stateDir;
//   request.migrationId = id;
//   request.state = blob;                       // from HandoffServer::prepare on S
//   request.sockets = {{fd, "conn0", local, remote, "ESTABLISHED"}, ...};
//   FERRY_TRY_ASSIGN(LaunchedWorkload workload, launchWorkload(request));
//
// The child process:
//   - joins `netnsFd` (setns) before anything else, so every socket it
//     creates is in the target namespace;
//   - gets sockets[i] as fd 3+i, without FD_CLOEXEC, and no other fd above
//     2 (fds 0-2 are the agent's);
//   - starts a new session (the agent's terminal signals do not reach it),
//     with an empty signal mask and default signal dispositions;
//   - has the agent's environment, minus the variables below, plus
//     `environment`, plus LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID (its own
//     pid, set after fork) and FERRY_MANIFEST;
//   - runs argv[0] found as execvp(3) would find it, along the PATH of
//     that environment.
// launchWorkload returns after the exec succeeded, or with an Error that
// says why it failed ("cannot execute 'demo': No such file or directory");
// a child whose exec failed has been reaped.
//
// Ownership: the sockets are borrowed; the agent keeps its own fds (it
// needs them until commit finishes) and the child holds duplicates. The
// LaunchedWorkload owns a pidfd, not the process: destroying it does not
// signal the workload, which outlives the agent. The manifest file stays
// (the workload reads it when it likes); the caller removes it when the
// migration is over (LaunchedWorkload::manifestPath).
//
// Thread-safety: safe to call from any thread of a multithreaded agent.
// Everything the child needs is allocated before the fork; between fork and
// exec the child only makes async-signal-safe calls.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/flow.h"
#include "base/unique_fd.h"

namespace ferry::migration {

// One socket handed to the workload.
struct HandedSocket {
	int fd = -1;        // borrowed, valid for the call
	std::string name;   // LISTEN_FDNAMES entry: 1..255 printable ASCII, no ':'
	Endpoint local;
	Endpoint remote;    // family AF_UNSPEC for a listening socket
	std::string state;  // "ESTABLISHED", "LISTEN", ... as in the manifest
};

struct LaunchRequest {
	std::vector<std::string> argv;                  // argv[0] is the program
	std::map<std::string, std::string> environment; // extra variables; may not set the four below
	int netnsFd = -1;                               // borrowed; -1: the agent's own namespace
	std::string manifestDirectory;                  // must exist; the agent's state dir
	std::string migrationId;                        // checkMigrationId()
	std::string state;                              // the workload's blob (raw bytes)
	std::vector<HandedSocket> sockets;              // become fds 3, 4, ...
};

// The FERRY_MANIFEST document, exactly as docs/workloads.md shows it:
// {"version":1,"migration":...,"state":<base64>,"connections":[{"fd":3,
// "name":...,"local":...,"remote":...,"state":...},...]}, remote "" for a
// listener. Exposed for tests and for the engine's logs.
std::string encodeManifest(std::string_view migrationId, std::string_view state,
			   const std::vector<HandedSocket> &sockets);

// How a workload ended.
struct WorkloadExit {
	bool exited = false; // exited with `code`, else killed by `signal`
	int code = 0;
	int signal = 0;

	friend bool operator==(const WorkloadExit &, const WorkloadExit &) = default;
};

// The started workload. Move-only; the destructor closes the pidfd and
// nothing else. Until someone waits for it, an exited workload remains a
// zombie child of the agent: ferryd reaps its children.
class LaunchedWorkload {
public:
	LaunchedWorkload(pid_t pid, UniqueFd pidfd, std::string manifestPath)
		: pid_(pid), pidfd_(std::move(pidfd)), manifestPath_(std::move(manifestPath))
	{
	}

	pid_t pid() const { return pid_; }
	int pidfd() const { return pidfd_.get(); } // borrowed
	const std::string &manifestPath() const { return manifestPath_; }

	// Sends `signal` through the pidfd (never to a reused pid).
	Status terminate(int signal = SIGTERM) const;

	// Waits up to `timeout` for the workload to end and reaps it.
	// ETIMEDOUT when it is still running; ECHILD when already reaped.
	Result<WorkloadExit> wait(std::chrono::milliseconds timeout) const;

private:
	pid_t pid_;
	UniqueFd pidfd_;
	std::string manifestPath_;
};

// Errors: EINVAL (empty argv, bad name, bad migration id, an environment
// entry that sets LISTEN_* or FERRY_MANIFEST or holds '=' in its name,
// an invalid fd), an errno from writing the manifest, from fork, or the
// child's setns/dup2/exec (reported back through a close-on-exec pipe).
Result<LaunchedWorkload> launchWorkload(const LaunchRequest &request);

} // namespace ferry::migration
