#include "doctor.h"

#include <fcntl.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>

#include "base/unique_fd.h"
#include "netlock/lock_sweep.h"
#include "repair/kernel_features.h"

extern char **environ;

namespace ferry::cli {

namespace {

// `criu check` takes well under a second; a criu that hangs must not hang
// the doctor.
constexpr std::chrono::seconds kCriuTimeout{20};

std::string kernelRelease()
{
	utsname u{};
	if (::uname(&u) < 0)
		return "unknown";
	return u.release;
}

std::vector<DoctorCheck> kernelChecks()
{
	repair::KernelFeatures f = repair::probeKernelFeatures();
	std::string kernel = "Linux " + kernelRelease();
	std::vector<DoctorCheck> checks;
	checks.push_back({"kernel: TCP_REPAIR", true, f.repair,
			  f.repair ? "setsockopt(TCP_REPAIR) accepted (" + kernel + ")"
				   : "setsockopt(TCP_REPAIR) refused: it needs CAP_NET_ADMIN over this network namespace (" +
					     kernel + ")"});
	auto ipv6 = DoctorCheck{"IPv6", false, f.ipv6,
				f.ipv6 ? "AF_INET6 sockets can be created" : "IPv6 is off here: IPv6 connections cannot move"};
	if (!f.repair) {
		// The other repair probes need repair mode; they would only repeat the failure.
		checks.push_back(std::move(ipv6));
		return checks;
	}
	checks.push_back({"kernel: TCP_REPAIR_WINDOW", true, f.repairWindow,
			  f.repairWindow ? "windows are restored exactly"
					 : "missing (Linux >= 4.8): windows cannot be restored"});
	checks.push_back({"kernel: TCP_TIMESTAMP in repair mode", true, f.timestamp,
			  f.timestamp ? "timestamps carry over" : "missing (Linux >= 3.9): peers would see timestamps jump"});
	checks.push_back({"kernel: half-closed repair", false, f.halfClosedRepair,
			  f.halfClosedRepair ? "FIN_WAIT1/2, CLOSING and LAST_ACK connections can move"
					     : "missing: only connections that are not half-closed can move"});
	checks.push_back(std::move(ipv6));
	return checks;
}

std::vector<DoctorCheck> capabilityChecks()
{
	__user_cap_header_struct header{};
	header.version = _LINUX_CAPABILITY_VERSION_3;
	header.pid = 0;
	__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
	if (::syscall(SYS_capget, &header, data) < 0) {
		std::string why = std::string("capget failed: ") + std::strerror(errno);
		return {{"capability: CAP_NET_ADMIN", true, false, why}, {"capability: CAP_SYS_PTRACE", true, false, why}};
	}
	auto effective = [&](int cap) { return (data[CAP_TO_INDEX(cap)].effective & CAP_TO_MASK(cap)) != 0; };
	bool netAdmin = effective(CAP_NET_ADMIN);
	bool ptrace = effective(CAP_SYS_PTRACE);
	return {
		{"capability: CAP_NET_ADMIN", true, netAdmin,
		 netAdmin ? "effective: repair mode, nftables locks and addresses can be changed"
			  : "not effective: repair mode, nftables locks and address moves are refused"},
		{"capability: CAP_SYS_PTRACE", true, ptrace,
		 ptrace ? "effective: sockets can be taken from other users' processes with pidfd_getfd"
			: "not effective: pidfd_getfd works only on this user's own processes"},
	};
}

DoctorCheck nftablesCheck()
{
	auto locks = netlock::listLocks("self");
	if (!locks.ok())
		return {"nftables", true, false, "cannot list tables over netlink: " + locks.error().message()};
	std::string detail = "usable over netlink; " + std::to_string(locks->size()) + " ferry lock" +
			     (locks->size() == 1 ? "" : "s") + " in this network namespace";
	for (size_t i = 0; i < locks->size() && i < 5; ++i)
		detail += (i == 0 ? ": " : ", ") + (*locks)[i].table;
	if (!locks->empty())
		detail += " (ferryd sweeps the ones of migrations that ended)";
	return {"nftables", true, true, detail};
}

DoctorCheck pidfdCheck()
{
	DoctorCheck check{"pidfd_getfd", true, false, {}};
	UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), 0)));
	if (!pidfd) {
		check.detail = errno == ENOSYS ? "pidfd_open is missing (Linux >= 5.3)"
					       : std::string("pidfd_open failed: ") + std::strerror(errno);
		return check;
	}
	UniqueFd copy(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), pidfd.get(), 0)));
	if (!copy) {
		check.detail = errno == ENOSYS ? "pidfd_getfd is missing (Linux >= 5.6): sockets cannot be taken from a process"
					       : std::string("pidfd_getfd failed: ") + std::strerror(errno);
		return check;
	}
	check.ok = true;
	check.detail = "available: sockets can be taken from a frozen process";
	return check;
}

std::string findInPath(const std::string &name)
{
	const char *path = std::getenv("PATH");
	std::string dirs = path ? path : "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
	size_t start = 0;
	while (start <= dirs.size()) {
		size_t end = dirs.find(':', start);
		if (end == std::string::npos)
			end = dirs.size();
		std::string candidate = dirs.substr(start, end - start);
		candidate = (candidate.empty() ? std::string(".") : candidate) + "/" + name;
		if (::access(candidate.c_str(), X_OK) == 0)
			return candidate;
		start = end + 1;
	}
	return {};
}

// The line that says why: criu's first "Error" line is the cause, the
// later ones are its consequences; other tools end with the reason.
std::string reasonLine(const std::string &output)
{
	std::vector<std::string> lines;
	size_t start = 0;
	while (start < output.size()) {
		size_t end = output.find('\n', start);
		if (end == std::string::npos)
			end = output.size();
		if (end > start)
			lines.push_back(output.substr(start, end - start));
		start = end + 1;
	}
	for (const std::string &l : lines) {
		if (l.rfind("Error", 0) == 0)
			return l;
	}
	return lines.empty() ? std::string() : lines.back();
}

DoctorCheck criuCheck()
{
	DoctorCheck check{"criu", false, false, {}};
	std::string criu = findInPath("criu");
	if (criu.empty()) {
		check.detail = "not installed: migrations use the native handoff (LISTEN_FDS), which needs no criu";
		return check;
	}
	int pipeFds[2];
	if (::pipe2(pipeFds, O_CLOEXEC) < 0) {
		check.detail = std::string("cannot run criu check: pipe: ") + std::strerror(errno);
		return check;
	}
	UniqueFd readEnd(pipeFds[0]);
	UniqueFd writeEnd(pipeFds[1]);
	posix_spawn_file_actions_t actions;
	posix_spawn_file_actions_init(&actions);
	posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), STDOUT_FILENO);
	posix_spawn_file_actions_adddup2(&actions, writeEnd.get(), STDERR_FILENO);
	posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
	char arg0[] = "criu";
	char arg1[] = "check";
	char *argv[] = {arg0, arg1, nullptr};
	pid_t pid = -1;
	int rc = ::posix_spawn(&pid, criu.c_str(), &actions, nullptr, argv, environ);
	posix_spawn_file_actions_destroy(&actions);
	writeEnd.reset();
	if (rc != 0) {
		check.detail = "cannot run " + criu + ": " + std::strerror(rc);
		return check;
	}

	std::string output;
	auto deadline = std::chrono::steady_clock::now() + kCriuTimeout;
	bool timedOut = false;
	for (;;) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0) {
			timedOut = true;
			break;
		}
		pollfd p{readEnd.get(), POLLIN, 0};
		int ready = ::poll(&p, 1, static_cast<int>(left.count()));
		if (ready < 0 && errno == EINTR)
			continue;
		if (ready <= 0) {
			timedOut = ready == 0;
			break;
		}
		char buffer[4096];
		ssize_t n = ::read(readEnd.get(), buffer, sizeof buffer);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		if (output.size() < 64 * 1024)
			output.append(buffer, static_cast<size_t>(n));
	}
	if (timedOut)
		::kill(pid, SIGKILL); // our own child, by its pid
	int status = 0;
	while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
	}
	if (timedOut) {
		check.detail = criu + " check did not finish within " + std::to_string(kCriuTimeout.count()) +
			       " s; the native handoff (LISTEN_FDS) needs no criu";
	} else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		check.ok = true;
		check.detail = criu + " check passed: CRIU mode is available";
	} else {
		std::string why = reasonLine(output);
		check.detail = criu + " is installed but 'criu check' fails" + (why.empty() ? "" : " (" + why + ")") +
			       ": CRIU mode is unavailable; the native handoff (LISTEN_FDS) needs no criu";
	}
	return check;
}

DoctorCheck agentCheck(const CommandLine &line, const Result<api::AgentCredentials> &credentials)
{
	DoctorCheck check{"agent " + line.agentUrl(), true, false, {}};
	if (!credentials.ok()) {
		check.detail = "cannot load the credentials: " + credentials.error().message();
		return check;
	}
	auto client = api::AgentClient::connect(line.agentUrl(), *credentials);
	if (!client.ok()) {
		check.detail = client.error().message();
		return check;
	}
	auto info = client->info();
	if (!info.ok()) {
		ExitCode code = exitCodeFor(info.error());
		std::string why = code == ExitCode::Unreachable ? "unreachable"
				: code == ExitCode::Refused     ? "refused the credentials (--token-file, --cert/--key)"
								: "answered with an error";
		check.detail = why + ": " + info.error().message();
		return check;
	}
	std::string strategies;
	for (const std::string &s : info->lockStrategies)
		strategies += (strategies.empty() ? "" : ", ") + s;
	check.ok = true;
	check.detail = "version " + info->version + " on host " + info->hostname +
		       " accepts the credentials; lock strategies: " +
		       (strategies.empty() ? std::string("none") : strategies) + "; criu " +
		       (info->criuAvailable ? "available" : "unavailable");
	return check;
}

} // namespace

std::vector<DoctorCheck> runDoctorChecks(const CommandLine &line, const Result<api::AgentCredentials> &credentials)
{
	std::vector<DoctorCheck> checks = kernelChecks();
	for (DoctorCheck &c : capabilityChecks())
		checks.push_back(std::move(c));
	checks.push_back(nftablesCheck());
	checks.push_back(pidfdCheck());
	checks.push_back(criuCheck());
	checks.push_back(agentCheck(line, credentials));
	return checks;
}

} // namespace ferry::cli
