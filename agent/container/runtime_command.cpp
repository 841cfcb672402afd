#include "container/runtime_command.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <string_view>

#include "base/unique_fd.h"

extern char **environ;

namespace ferry::container {

namespace {

constexpr int kFirstPassedFd = 3;
constexpr size_t kMaxCapture = 1 << 20;   // a runtime's JSON is far smaller
constexpr size_t kOutputFileTail = 4096;
constexpr size_t kErrorTail = 600;

// What the child reports through the pipe when it cannot exec.
struct ChildFailure {
	int stage; // 1: fds, 2: exec
	int error;
};

// struct clone_args, CLONE_ARGS_SIZE_VER0 (Linux 5.3): declared here
// because <linux/sched.h> and glibc's <sched.h> collide.
struct CloneArgs {
	uint64_t flags;
	uint64_t pidfd;
	uint64_t childTid;
	uint64_t parentTid;
	uint64_t exitSignal;
	uint64_t stack;
	uint64_t stackSize;
	uint64_t tls;
};
constexpr uint64_t kClonePidfd = 0x1000;

// Everything the child needs, prepared before the fork: a child of a
// multithreaded agent may only make async-signal-safe calls.
struct ChildPlan {
	int stdinFd = -1;
	int stdoutFd = -1;
	int stderrFd = -1;
	int errorFd = -1;
	std::vector<int> sources;
	std::vector<int> copies;
	std::vector<char *> argv;
	std::vector<char *> envp;
	std::vector<const char *> candidates;
};

[[noreturn]] void childFail(int errorFd, int stage)
{
	ChildFailure failure{stage, errno};
	(void)!::write(errorFd, &failure, sizeof(failure));
	::_exit(127);
}

// Moves `fd` to the lowest free fd >= `floor`, close-on-exec.
int moveAbove(int fd, int floor, int errorFd)
{
	int moved = ::fcntl(fd, F_DUPFD_CLOEXEC, floor);
	if (moved < 0)
		childFail(errorFd, 1);
	return moved;
}

[[noreturn]] void runChild(ChildPlan &plan)
{
	struct sigaction defaults{};
	defaults.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		::sigaction(sig, &defaults, nullptr);
	sigset_t none;
	::sigemptyset(&none);
	::sigprocmask(SIG_SETMASK, &none, nullptr);
	// Its own session: a terminal's ^C to the agent must not reach a
	// runtime that is half-way through creating a container.
	::setsid();

	int n = static_cast<int>(plan.sources.size());
	int top = kFirstPassedFd + n;
	// Everything that is not a passed socket goes above the target range
	// first, so that no dup2 below clobbers it.
	int errorFd = moveAbove(plan.errorFd, top, plan.errorFd);
	int in = moveAbove(plan.stdinFd, top, errorFd);
	int out = moveAbove(plan.stdoutFd, top, errorFd);
	int err = moveAbove(plan.stderrFd, top, errorFd);
	// The agent's sockets usually sit ascending, all >= 3: then source i
	// >= 3+i and dup2 in ascending order never clobbers a source still to
	// be moved, and no copies are needed (thousands of sockets would
	// otherwise need twice as many fds).
	bool ascending = n == 0 || plan.sources[0] >= kFirstPassedFd;
	for (int i = 1; ascending && i < n; i++)
		ascending = plan.sources[static_cast<size_t>(i)] > plan.sources[static_cast<size_t>(i - 1)];
	if (!ascending)
		for (int i = 0; i < n; i++)
			plan.copies[static_cast<size_t>(i)] = moveAbove(plan.sources[static_cast<size_t>(i)], top, errorFd);
	const std::vector<int> &from = ascending ? plan.sources : plan.copies;
	for (int i = 0; i < n; i++) {
		int source = from[static_cast<size_t>(i)];
		// dup2 onto itself does nothing: clear FD_CLOEXEC by hand.
		int rc = source == kFirstPassedFd + i ? ::fcntl(source, F_SETFD, 0) : ::dup2(source, kFirstPassedFd + i);
		if (rc < 0)
			childFail(errorFd, 1);
	}
	if (::dup2(in, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0)
		childFail(errorFd, 1);
	// Every fd of the agent above the range closes at exec.
	if (::syscall(SYS_close_range, static_cast<unsigned>(top), ~0u, CLOSE_RANGE_CLOEXEC) != 0) {
		rlimit limit{};
		int max = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
				  ? static_cast<int>(std::min<rlim_t>(limit.rlim_cur, 1 << 20))
				  : 1 << 16;
		for (int fd = top; fd < max; fd++)
			::fcntl(fd, F_SETFD, FD_CLOEXEC);
	}
	int lastError = ENOENT;
	for (const char *candidate : plan.candidates) {
		if (!candidate)
			break;
		::execve(candidate, plan.argv.data(), plan.envp.data());
		if (errno != ENOENT && errno != ENOTDIR && errno != EACCES)
			lastError = errno;
		else if (errno == EACCES && lastError == ENOENT)
			lastError = EACCES;
	}
	errno = lastError;
	childFail(errorFd, 2);
}

// The agent's environment without what would make a runtime treat the
// agent's own service manager protocol as the container's: podman reads
// LISTEN_FDS/LISTEN_PID (socket activation) and NOTIFY_SOCKET (sd_notify
// proxying) from its environment, and ferryd may run under systemd with
// them set.
std::vector<char *> runtimeEnvironment()
{
	constexpr std::string_view kDropped[] = {"LISTEN_FDS=", "LISTEN_FDNAMES=", "LISTEN_PID=", "NOTIFY_SOCKET="};
	std::vector<char *> out;
	for (char **entry = environ; entry && *entry; entry++) {
		std::string_view item(*entry);
		bool dropped = false;
		for (std::string_view prefix : kDropped)
			dropped = dropped || item.substr(0, prefix.size()) == prefix;
		if (!dropped)
			out.push_back(*entry);
	}
	out.push_back(nullptr);
	return out;
}

std::vector<std::string> executableCandidates(const std::string &file)
{
	if (file.find('/') != std::string::npos)
		return {file};
	const char *pathVariable = ::getenv("PATH");
	std::string path = pathVariable ? pathVariable : "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin";
	std::vector<std::string> out;
	size_t start = 0;
	for (;;) {
		size_t colon = path.find(':', start);
		std::string dir = path.substr(start, colon == std::string::npos ? std::string::npos : colon - start);
		out.push_back((dir.empty() ? std::string(".") : dir) + "/" + file);
		if (colon == std::string::npos)
			break;
		start = colon + 1;
	}
	return out;
}

pid_t forkWithPidfd(int &pidfd)
{
	CloneArgs args{};
	args.flags = kClonePidfd;
	args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
	args.exitSignal = SIGCHLD;
	long pid = ::syscall(SYS_clone3, &args, sizeof(args));
	if (pid >= 0 || errno != ENOSYS)
		return static_cast<pid_t>(pid);
	pid = ::fork();
	if (pid > 0)
		pidfd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(pid), 0));
	return static_cast<pid_t>(pid);
}

// Reads what is there without blocking; false at EOF or on error.
bool drain(int fd, std::string &into)
{
	char buffer[16384];
	for (;;) {
		ssize_t n = ::read(fd, buffer, sizeof(buffer));
		if (n > 0) {
			if (into.size() < kMaxCapture)
				into.append(buffer, static_cast<size_t>(std::min<size_t>(static_cast<size_t>(n), kMaxCapture - into.size())));
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		return n < 0 && errno == EAGAIN;
	}
}

std::string fileTail(const std::string &path)
{
	UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
	if (!fd)
		return {};
	off_t size = ::lseek(fd.get(), 0, SEEK_END);
	off_t from = size > static_cast<off_t>(kOutputFileTail) ? size - static_cast<off_t>(kOutputFileTail) : 0;
	std::string out(static_cast<size_t>(size - from), '\0');
	ssize_t n = ::pread(fd.get(), out.data(), out.size(), from);
	out.resize(n > 0 ? static_cast<size_t>(n) : 0);
	return out;
}

int exitCodeOf(const siginfo_t &info)
{
	return info.si_code == CLD_EXITED ? info.si_status : 128 + info.si_status;
}

} // namespace

std::string describeCommand(const std::vector<std::string> &argv)
{
	std::string out;
	for (const std::string &arg : argv) {
		if (!out.empty())
			out += ' ';
		bool plain = !arg.empty() && arg.find_first_of(" \t\n'\"\\$`;&|<>*?()[]{}") == std::string::npos;
		if (plain) {
			out += arg;
			continue;
		}
		out += '\'';
		for (char c : arg)
			out += c == '\'' ? std::string("'\\''") : std::string(1, c);
		out += '\'';
	}
	return out;
}

Error commandError(const std::vector<std::string> &argv, const CommandOutput &output, std::string what, int code)
{
	std::string err = output.err;
	while (!err.empty() && (err.back() == '\n' || err.back() == ' '))
		err.pop_back();
	if (err.size() > kErrorTail)
		err = "..." + err.substr(err.size() - kErrorTail);
	std::string text = std::move(what) + ": `" + describeCommand(argv) + "` exited with " +
			   std::to_string(output.exitCode);
	if (!err.empty())
		text += ": " + err;
	return makeError(std::move(text), code);
}

Result<CommandOutput> runCommand(const std::vector<std::string> &argv, const CommandOptions &options)
{
	if (argv.empty() || argv.front().empty())
		return makeError("no command to run", EINVAL);
	for (int fd : options.passFds)
		if (fd < 0 || ::fcntl(fd, F_GETFD) < 0)
			return makeError("an fd to pass is not open", EBADF).at("fd", std::to_string(fd)).at("command", argv.front());

	UniqueFd devNull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	if (!devNull)
		return errnoError("cannot open /dev/null");
	UniqueFd outRead, outWrite, errRead, errWrite;
	if (options.outputFile.empty()) {
		int p[2];
		if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
			return errnoError("cannot create a pipe for a runtime's output");
		outRead.reset(p[0]);
		outWrite.reset(p[1]);
		if (::pipe2(p, O_CLOEXEC | O_NONBLOCK) != 0)
			return errnoError("cannot create a pipe for a runtime's output");
		errRead.reset(p[0]);
		errWrite.reset(p[1]);
		// The child's ends block, as programs expect of their stdio.
		::fcntl(outWrite.get(), F_SETFL, 0);
		::fcntl(errWrite.get(), F_SETFL, 0);
	} else {
		outWrite.reset(::open(options.outputFile.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600));
		if (!outWrite)
			return errnoError("cannot open a runtime's log file").at("file", options.outputFile);
	}
	int p[2];
	if (::pipe2(p, O_CLOEXEC) != 0)
		return errnoError("cannot create the exec report pipe");
	UniqueFd reportRead(p[0]), reportWrite(p[1]);

	std::vector<std::string> argvStorage = argv;
	std::vector<std::string> candidates = executableCandidates(argv.front());
	ChildPlan plan;
	plan.stdinFd = devNull.get();
	plan.stdoutFd = outWrite.get();
	plan.stderrFd = errWrite ? errWrite.get() : outWrite.get();
	plan.errorFd = reportWrite.get();
	plan.sources = options.passFds;
	plan.copies.resize(plan.sources.size(), -1);
	for (std::string &arg : argvStorage)
		plan.argv.push_back(arg.data());
	plan.argv.push_back(nullptr);
	plan.envp = runtimeEnvironment();
	for (const std::string &candidate : candidates)
		plan.candidates.push_back(candidate.c_str());
	plan.candidates.push_back(nullptr);

	sigset_t all, previous;
	::sigfillset(&all);
	::pthread_sigmask(SIG_SETMASK, &all, &previous);
	int rawPidfd = -1;
	pid_t pid = forkWithPidfd(rawPidfd);
	if (pid == 0)
		runChild(plan);
	int forkErrno = errno;
	::pthread_sigmask(SIG_SETMASK, &previous, nullptr);
	if (pid < 0)
		return errnoError(forkErrno, "cannot fork to run `" + describeCommand(argv) + "`");
	UniqueFd pidfd(rawPidfd);
	reportWrite.reset();
	outWrite.reset();
	errWrite.reset();
	if (!pidfd) {
		// Our unreaped child: its pid cannot have been reused yet.
		Error error = errnoError("cannot open a pidfd to follow `" + describeCommand(argv) + "`");
		::kill(pid, SIGKILL);
		::waitpid(pid, nullptr, 0);
		return error;
	}

	auto reap = [&]() -> Result<siginfo_t> {
		siginfo_t info{};
		while (::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info, WEXITED) != 0)
			if (errno != EINTR)
				return errnoError("cannot reap `" + describeCommand(argv) + "`");
		return info;
	};

	ChildFailure failure{};
	ssize_t got;
	do
		got = ::read(reportRead.get(), &failure, sizeof(failure));
	while (got < 0 && errno == EINTR);
	if (got != 0) {
		int readErrno = errno;
		(void)reap();
		if (got == static_cast<ssize_t>(sizeof(failure)))
			return errnoError(failure.error, failure.stage == 1
								 ? "cannot pass fds to `" + describeCommand(argv) + "`"
								 : "cannot execute '" + argv.front() + "'");
		return errnoError(got < 0 ? readErrno : EIO, "the exec report of '" + argv.front() + "' was cut short");
	}

	CommandOutput output;
	auto deadline = std::chrono::steady_clock::now() + options.timeout;
	bool outOpen = outRead.isValid(), errOpen = errRead.isValid();
	for (;;) {
		pollfd fds[3] = {{pidfd.get(), POLLIN, 0},
				 {outOpen ? outRead.get() : -1, POLLIN, 0},
				 {errOpen ? errRead.get() : -1, POLLIN, 0}};
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0) {
			::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
			(void)reap();
			return makeError("`" + describeCommand(argv) + "` did not finish within " +
						 std::to_string(options.timeout.count()) + " ms and was killed",
					 ETIMEDOUT);
		}
		int ready = ::poll(fds, 3, static_cast<int>(std::min<long long>(left.count(), 1000)));
		if (ready < 0 && errno != EINTR) {
			// As on the timeout: a child we stop watching must not outlive
			// the call (it may hold the sockets it was passed).
			int pollErrno = errno;
			::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
			(void)reap();
			return errnoError(pollErrno, "cannot wait for `" + describeCommand(argv) + "`");
		}
		if (ready <= 0)
			continue;
		if (outOpen && fds[1].revents)
			outOpen = drain(outRead.get(), output.out);
		if (errOpen && fds[2].revents)
			errOpen = drain(errRead.get(), output.err);
		if (fds[0].revents) {
			// Exited. What it wrote is in the pipes now; a daemon it left
			// behind may hold them open forever, so read what is there and
			// do not wait for EOF.
			FERRY_TRY_ASSIGN(siginfo_t info, reap());
			if (outOpen)
				drain(outRead.get(), output.out);
			if (errOpen)
				drain(errRead.get(), output.err);
			output.exitCode = exitCodeOf(info);
			break;
		}
	}
	if (!options.outputFile.empty())
		output.err = fileTail(options.outputFile);
	return output;
}

} // namespace ferry::container
