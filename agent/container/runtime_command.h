// Running a container runtime's CLI as a child process (internal to
// agent/container).
//
//   FERRY_TRY_ASSIGN(CommandOutput out, runCommand({"runc", "state", "web"}, {}));
//   if (out.exitCode != 0) return commandError(argv, out, "runc does not know the container");
//
// The argv is executed directly (no shell), found along the agent's PATH
// as execvp(3) would. The child gets /dev/null as stdin, its own session,
// default signal dispositions, the agent's environment without
// LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID and NOTIFY_SOCKET (the agent's
// own service manager's, which podman would otherwise hand on to the
// container), and no fd of the
// agent except the ones listed in CommandOptions::passFds, which land at
// fds 3, 4, ... in order (what `runc create --preserve-fds N` and `podman
// run --preserve-fds N` hand on to the container).
//
// The child is waited for through a pidfd, so an agent that also reaps
// other children (the workloads it starts) never loses this one's status.
// When it runs past the timeout it is killed with SIGKILL and reaped, and
// the call returns ETIMEDOUT naming the command.
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "base/error.h"

namespace ferry::container {

struct CommandOptions {
	std::chrono::milliseconds timeout{30000};
	// Borrowed fds that become 3, 4, ... in the child. Each must be open.
	std::vector<int> passFds;
	// Empty: stdout and stderr are captured through pipes. Otherwise both
	// are appended to this file, and CommandOutput.err holds its last
	// bytes: for commands that leave a process behind that keeps their
	// stdio (runc create: the container's init inherits it), where a pipe
	// would never see EOF and the container would write into a pipe
	// nobody reads.
	std::string outputFile;
};

struct CommandOutput {
	int exitCode = 0;     // the exit status, or 128 + signal when killed
	std::string out;      // stdout (empty with outputFile)
	std::string err;      // stderr, or the tail of outputFile
};

// Runs `argv` to its end. An Error only when it could not be run, or ran
// past the timeout; a non-zero exit is an ordinary CommandOutput.
Result<CommandOutput> runCommand(const std::vector<std::string> &argv, const CommandOptions &options);

// "runc --root /x state web": the argv as a user would type it (words
// with spaces or quotes are single-quoted).
std::string describeCommand(const std::vector<std::string> &argv);

// An Error for a command that ran and failed: "<what>: `<command>` exited
// with N: <stderr's last line(s)>", with `code` as its errno.
Error commandError(const std::vector<std::string> &argv, const CommandOutput &output, std::string what,
		   int code = EIO);

} // namespace ferry::container
