// Who holds a socket, and taking it from its holder.
//
// Discovery (sock_diag.h) names sockets by inode. The workload holds them
// as fds. This maps one to the other within a process tree, then takes a
// socket with pidfd_getfd(2):
//
//   FERRY_TRY_ASSIGN(SocketOwnerMap owners, mapSocketOwners(workloadPid));
//   for (const TcpSocketInfo &s : sockets)
//       if (const auto *holders = owners.find(s.inode))
//           FERRY_TRY_ASSIGN(UniqueFd fd, taker.take(holders->front().pid,
//                                                     holders->front().fd, s.inode));
//
// Both read the state of other processes, which may change between the
// calls. The workload should be frozen first (DESIGN.md, phase 2); take()
// also re-checks the inode, so a reused pid or fd number is refused, never
// mistaken for the socket.
//
// Privileges: reading /proc/PID/fd and pidfd_getfd both need ptrace access
// to the holder (PTRACE_MODE_READ resp. PTRACE_MODE_ATTACH_REALCREDS):
// CAP_SYS_PTRACE, or the same uid with Yama's ptrace_scope <= 0 or 1 and an
// ancestor relationship, and no LSM refusing it.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string_view>
#include <optional>
#include <unordered_map>
#include <vector>

#include "base/error.h"
#include "base/unique_fd.h"

namespace ferry::netlink {

// One fd that refers to a socket.
struct SocketHolder {
	pid_t pid = 0; // a thread-group id (process), never a thread id
	int fd = -1;

	friend bool operator==(const SocketHolder &, const SocketHolder &) = default;
};

// Socket inode -> every fd in the scanned processes that refers to it. One
// socket can have several holders: fork() inheritance, dup(), SCM_RIGHTS.
class SocketOwnerMap {
public:
	// nullptr when no scanned process holds `inode`. Holders are in scan
	// order: processes by ascending pid, fds by ascending number.
	const std::vector<SocketHolder> *find(uint64_t inode) const;

	size_t socketCount() const { return holders_.size(); }
	// Socket fds seen, counting each holder.
	size_t fdCount() const { return fdCount_; }
	// The processes that were scanned (the tree, ascending).
	const std::vector<pid_t> &processes() const { return processes_; }

	// Filled by mapSocketOwners(); public so that tests and callers with
	// holders from elsewhere (SCM_RIGHTS handoff) can build one.
	void add(uint64_t inode, SocketHolder holder);
	void setProcesses(std::vector<pid_t> processes) { processes_ = std::move(processes); }

private:
	std::unordered_map<uint64_t, std::vector<SocketHolder>> holders_;
	std::vector<pid_t> processes_;
	size_t fdCount_ = 0;
};

// `root` and all its descendants alive at the time of the scan, ascending.
// Parents come from /proc/PID/stat of every process, not from
// /proc/PID/task/TID/children, which needs CONFIG_PROC_CHILDREN (not set
// on many kernels, this project's CI included). A process that forks or
// exits during the scan may be missed; freeze the tree first.
// Error ESRCH when root does not exist.
Result<std::vector<pid_t>> processTree(pid_t root);

// Scans /proc/PID/fd of `root` and its descendants for sockets. Processes
// that exit during the scan are skipped; one whose fds cannot be read
// (EACCES) fails the call, because a silently partial map would make
// discovery report sockets as unowned.
Result<SocketOwnerMap> mapSocketOwners(pid_t root);

// The syscalls that take() uses, as a seam for tests that inject ENOSYS or
// EPERM. Each returns -1 and sets errno on failure, as the kernel does.
struct PidfdCalls {
	int (*pidfdOpen)(pid_t pid, unsigned flags);
	int (*pidfdGetfd)(int pidfd, int targetFd, unsigned flags);

	// The real syscalls (through syscall(2): glibc before 2.36 has no wrappers).
	static PidfdCalls kernel();
};

// Takes sockets from other processes with pidfd_open + pidfd_getfd (Linux
// 5.6). The result is a new fd in this process referring to the same open
// socket (like dup(2) across processes): the holder keeps its fd, and data
// and state are shared. It is close-on-exec.
class SocketTaker {
public:
	explicit SocketTaker(PidfdCalls calls = PidfdCalls::kernel()) : calls_(calls) {}

	// A pidfd for `pid`, to take several fds from one process.
	// Errors: ESRCH (no such process), EINVAL or ENOENT (a thread id, not
	// a process; the code depends on the kernel version),
	// ENOSYS (kernel older than 5.3).
	Result<UniqueFd> openProcess(pid_t pid) const;

	// Takes fd `fd` from the process behind `pidfd` (borrowed; `pid` names
	// it in errors). When `expectedInode` is not 0 the taken fd must be
	// that socket. Errors: EPERM (ptrace access refused), EBADF (no such
	// fd), ESRCH (the process has exited), ENOTSOCK (not a socket),
	// ESTALE (a different socket than expected), ENOSYS (kernel < 5.6).
	Result<UniqueFd> takeFrom(int pidfd, pid_t pid, int fd, uint64_t expectedInode = 0) const;

	// openProcess + takeFrom.
	Result<UniqueFd> take(pid_t pid, int fd, uint64_t expectedInode = 0) const;

private:
	PidfdCalls calls_;
};

namespace detail {
// "socket:[12345]" -> 12345; anything else -> nullopt.
std::optional<uint64_t> parseSocketLink(std::string_view link);
// The parent pid (4th field) of a /proc/PID/stat line; the command name in
// parentheses may itself contain spaces and ')'.
std::optional<pid_t> parseParentPid(std::string_view statLine);
} // namespace detail

} // namespace ferry::netlink
