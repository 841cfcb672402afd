#include "migration/workload_launcher.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "base/base64.h"
#include "base/log.h"
#include "migration/workload_handoff.h"

extern char **environ;

namespace ferry::migration {

namespace {

FERRY_LOG_CATEGORY(logLauncher, "migration")

constexpr int kFirstFd = 3; // SD_LISTEN_FDS_START
constexpr size_t kMaxFdNameBytes = 255;
constexpr const char *kReservedVariables[] = {"LISTEN_FDS", "LISTEN_FDNAMES", "LISTEN_PID", "FERRY_MANIFEST"};
constexpr std::string_view kListenPidPrefix = "LISTEN_PID=";
constexpr size_t kPidDigits = 20;

// What the child reports through the pipe when it cannot exec.
enum class ChildStage : int { Setns = 1, Fds = 2, Exec = 3 };
struct ChildFailure {
	ChildStage stage;
	int error;
};

// struct clone_args as of Linux 5.3 (CLONE_ARGS_SIZE_VER0): a stable ABI,
// declared here because <linux/sched.h> and glibc's <sched.h> collide.
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
static_assert(sizeof(CloneArgs) == 64);
constexpr uint64_t kClonePidfd = 0x1000; // CLONE_PIDFD

// Through syscall(2): glibc 2.36's <sys/pidfd.h> lacks extern "C", so its
// wrappers cannot be linked from C++.
int pidfdOpen(pid_t pid)
{
	return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

// Everything the child uses, prepared before the fork: after it, the child
// of a multithreaded process may only make async-signal-safe calls, so it
// must not allocate.
struct ChildPlan {
	int netnsFd = -1;
	int errorFd = -1;
	std::vector<int> sources;    // sockets, in target order
	std::vector<int> copies;     // scratch, one per source
	std::vector<char *> argv;    // null-terminated
	std::vector<char *> envp;    // null-terminated
	char *listenPidDigits = nullptr; // kPidDigits + 1 writable bytes inside envp
	std::vector<const char *> candidates; // paths to try, as execvp would
};

bool isValidFdName(std::string_view name)
{
	return !name.empty() && name.size() <= kMaxFdNameBytes &&
	       std::all_of(name.begin(), name.end(), [](char c) { return c >= 0x20 && c < 0x7f && c != ':'; });
}

Error requestError(std::string what, int code = EINVAL)
{
	return makeError(std::move(what), code);
}

// --- the child (async-signal-safe only) ---

[[noreturn]] void childFail(int errorFd, ChildStage stage)
{
	ChildFailure failure{stage, errno};
	// If this write fails the parent sees a child that died without
	// exec'ing nor reporting, and says so.
	(void)!::write(errorFd, &failure, sizeof(failure));
	::_exit(127);
}

void writeDecimal(char *out, long value)
{
	char digits[kPidDigits];
	size_t n = 0;
	do {
		digits[n++] = static_cast<char>('0' + value % 10);
		value /= 10;
	} while (value > 0 && n < kPidDigits);
	for (size_t i = 0; i < n; i++)
		out[i] = digits[n - 1 - i];
	out[n] = '\0';
}

void markCloseOnExecFrom(int first)
{
	if (::syscall(SYS_close_range, static_cast<unsigned>(first), ~0u, CLOSE_RANGE_CLOEXEC) == 0)
		return;
	// Kernels before 5.11: one fcntl per possible fd.
	rlimit limit{};
	int max = ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY
			  ? static_cast<int>(std::min<rlim_t>(limit.rlim_cur, 1 << 20))
			  : 1 << 16;
	for (int fd = first; fd < max; fd++)
		::fcntl(fd, F_SETFD, FD_CLOEXEC);
}

[[noreturn]] void runChild(ChildPlan &plan)
{
	int errorFd = plan.errorFd;

	// The parent blocked every signal around the fork, so no handler of
	// the agent runs here. Ignored signals would stay ignored across exec
	// (a workload with SIGPIPE ignored by inheritance): reset them all,
	// then unblock.
	struct sigaction defaults{};
	defaults.sa_handler = SIG_DFL;
	for (int sig = 1; sig < NSIG; sig++)
		::sigaction(sig, &defaults, nullptr); // EINVAL for SIGKILL, SIGSTOP, glibc's own: fine
	sigset_t none;
	::sigemptyset(&none);
	::sigprocmask(SIG_SETMASK, &none, nullptr);

	// Its own session: a terminal's ^C to the agent does not reach the
	// workload, which outlives the agent.
	::setsid();

	if (plan.netnsFd >= 0 && ::setns(plan.netnsFd, CLONE_NEWNET) != 0)
		childFail(errorFd, ChildStage::Setns);

	int n = static_cast<int>(plan.sources.size());
	int top = kFirstFd + n;
	int movedErrorFd = ::fcntl(errorFd, F_DUPFD_CLOEXEC, top);
	if (movedErrorFd < 0)
		childFail(errorFd, ChildStage::Fds);
	errorFd = movedErrorFd;
	// The usual case: the agent's restored sockets have ascending fds,
	// all >= 3. Then source i >= 3+i, and dup2 in ascending order never
	// clobbers a source still to be moved (every later source is above
	// the target), so no copies are needed. That matters at scale: with
	// copies, 10,000 sockets need 20,000 fds in the child and hit the
	// open-file limit.
	bool ascending = n == 0 || plan.sources[0] >= kFirstFd;
	for (int i = 1; ascending && i < n; i++)
		ascending = plan.sources[static_cast<size_t>(i)] > plan.sources[static_cast<size_t>(i - 1)];
	if (ascending) {
		for (int i = 0; i < n; i++) {
			int source = plan.sources[static_cast<size_t>(i)];
			// dup2 onto itself does nothing: clear FD_CLOEXEC by hand.
			int rc = source == kFirstFd + i ? ::fcntl(source, F_SETFD, 0) : ::dup2(source, kFirstFd + i);
			if (rc < 0)
				childFail(errorFd, ChildStage::Fds);
		}
	} else {
		// Sources may sit anywhere, inside the target range 3..3+n too,
		// in any order. Copy everything needed above the range first,
		// then dup2 each copy down to its place: no dup2 can clobber a
		// source that is still to be moved.
		for (int i = 0; i < n; i++) {
			plan.copies[static_cast<size_t>(i)] =
				::fcntl(plan.sources[static_cast<size_t>(i)], F_DUPFD_CLOEXEC, top);
			if (plan.copies[static_cast<size_t>(i)] < 0)
				childFail(errorFd, ChildStage::Fds);
		}
		// dup2 leaves FD_CLOEXEC clear on the new fd: exactly 3..3+n-1
		// survive the exec.
		for (int i = 0; i < n; i++)
			if (::dup2(plan.copies[static_cast<size_t>(i)], kFirstFd + i) < 0)
				childFail(errorFd, ChildStage::Fds);
	}
	// Every other fd above the range (the agent's, the copies, the
	// netns fd, the error pipe) closes at exec; the pipe stays usable
	// until then.
	markCloseOnExecFrom(top);
	// A workload expects 0-2 to exist; an agent started with them closed
	// gives it /dev/null instead.
	for (int fd = 0; fd < kFirstFd; fd++)
		if (::fcntl(fd, F_GETFD) < 0) {
			int devNull = ::open("/dev/null", O_RDWR);
			if (devNull >= 0 && devNull != fd) {
				::dup2(devNull, fd);
				::close(devNull);
			}
		}

	writeDecimal(plan.listenPidDigits, static_cast<long>(::getpid()));

	// execvp(3)'s search, over the candidates the parent listed: EACCES
	// is remembered and reported if nothing else works; "not here"
	// errors go on to the next directory; anything else stops.
	bool sawAccessDenied = false;
	int lastError = ENOENT;
	for (const char *candidate : plan.candidates) {
		if (!candidate)
			break;
		::execve(candidate, plan.argv.data(), plan.envp.data());
		if (errno == EACCES) {
			sawAccessDenied = true;
			continue;
		}
		if (errno == ENOENT || errno == ENOTDIR || errno == ESTALE || errno == ENODEV || errno == ETIMEDOUT)
			continue;
		lastError = errno;
		sawAccessDenied = false;
		break;
	}
	errno = sawAccessDenied ? EACCES : lastError;
	childFail(errorFd, ChildStage::Exec);
}

// --- the parent ---

Status checkRequest(const LaunchRequest &request)
{
	if (request.argv.empty() || request.argv.front().empty())
		return requestError("the workload command is empty");
	FERRY_TRY(checkMigrationId(request.migrationId));
	for (const auto &[name, value] : request.environment) {
		if (name.empty() || name.find('=') != std::string::npos || name.find('\0') != std::string::npos ||
		    value.find('\0') != std::string::npos)
			return requestError("environment variable '" + name + "' has an invalid name or value");
		for (const char *reserved : kReservedVariables)
			if (name == reserved)
				return requestError("environment variable " + name + " is set by the launcher");
	}
	for (const std::string &arg : request.argv)
		if (arg.find('\0') != std::string::npos)
			return requestError("a workload argument holds a NUL byte");
	for (size_t i = 0; i < request.sockets.size(); i++) {
		const HandedSocket &s = request.sockets[i];
		if (!isValidFdName(s.name))
			return requestError("socket name '" + s.name + "' is not 1 to 255 printable characters without ':'")
				.at("socket", std::to_string(i));
		if (s.fd < 0 || ::fcntl(s.fd, F_GETFD) < 0)
			return requestError("socket '" + s.name + "' is not an open fd", EBADF)
				.at("fd", std::to_string(s.fd));
	}
	if (request.netnsFd >= 0 && ::fcntl(request.netnsFd, F_GETFD) < 0)
		return requestError("the target netns fd is not open", EBADF);
	return {};
}

// The manifest, written to a new file of mode 0600 in `directory`.
Result<std::string> writeManifest(const LaunchRequest &request)
{
	std::string path = request.manifestDirectory + "/ferry-manifest-" + request.migrationId + "-XXXXXX.json";
	// mkstemps: a name nobody else holds, created O_EXCL with mode 0600.
	int raw = ::mkstemps(path.data(), 5);
	if (raw < 0)
		return errnoError("cannot create the workload manifest").at("directory", request.manifestDirectory);
	UniqueFd fd(raw);
	auto fail = [&](const char *what) {
		Error error = errnoError(what).at("manifest", path);
		::unlink(path.c_str());
		return error;
	};
	if (::fchmod(fd.get(), 0600) != 0)
		return fail("cannot set the workload manifest's mode");
	std::string text = encodeManifest(request.migrationId, request.state, request.sockets);
	size_t done = 0;
	while (done < text.size()) {
		ssize_t n = ::write(fd.get(), text.data() + done, text.size() - done);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return fail("cannot write the workload manifest");
		done += static_cast<size_t>(n);
	}
	if (::close(fd.release()) != 0)
		return fail("cannot write the workload manifest");
	return path;
}

// The child's environment: the agent's, without what the launcher sets or
// the caller overrides, then the caller's, then the launcher's.
std::vector<std::string> buildEnvironment(const LaunchRequest &request, const std::string &manifestPath)
{
	std::vector<std::string> out;
	for (char **entry = environ; entry && *entry; entry++) {
		std::string_view item(*entry);
		std::string_view name = item.substr(0, item.find('='));
		bool replaced = request.environment.count(std::string(name)) != 0 ||
				std::any_of(std::begin(kReservedVariables), std::end(kReservedVariables),
					    [&](const char *reserved) { return name == reserved; });
		if (!replaced)
			out.emplace_back(item);
	}
	for (const auto &[name, value] : request.environment)
		out.push_back(name + "=" + value);
	std::string names;
	for (const HandedSocket &s : request.sockets)
		names.append(names.empty() ? "" : ":").append(s.name);
	out.push_back("LISTEN_FDS=" + std::to_string(request.sockets.size()));
	out.push_back("LISTEN_FDNAMES=" + names);
	out.push_back("FERRY_MANIFEST=" + manifestPath);
	// Filled in by the child, which alone knows its pid before exec.
	out.push_back(std::string(kListenPidPrefix) + std::string(kPidDigits + 1, '\0'));
	return out;
}

// The paths execvp(3) would try for `file`, along `PATH` of the child's
// environment (the libc default when it has none).
std::vector<std::string> executableCandidates(const std::string &file, const std::vector<std::string> &environment)
{
	if (file.find('/') != std::string::npos)
		return {file};
	std::string path = "/bin:/usr/bin";
	for (const std::string &entry : environment)
		if (entry.rfind("PATH=", 0) == 0)
			path = entry.substr(5);
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

// fork() that also returns a pidfd for the child, atomically (CLONE_PIDFD):
// no other waiter in the agent can reap the child and let its pid be
// reused before the pidfd exists. Returns the pid (0 in the child).
pid_t forkWithPidfd(int &pidfd)
{
	CloneArgs args{};
	args.flags = kClonePidfd;
	args.pidfd = reinterpret_cast<uint64_t>(&pidfd);
	args.exitSignal = SIGCHLD;
	long pid = ::syscall(SYS_clone3, &args, sizeof(args));
	if (pid >= 0 || errno != ENOSYS)
		return static_cast<pid_t>(pid);
	// Kernels before 5.3.
	pid = ::fork();
	if (pid > 0)
		pidfd = pidfdOpen(static_cast<pid_t>(pid));
	return static_cast<pid_t>(pid);
}

Error childError(const ChildFailure &failure, const LaunchRequest &request)
{
	const std::string &program = request.argv.front();
	switch (failure.stage) {
	case ChildStage::Setns:
		return errnoError(failure.error, "cannot enter the target network namespace for '" + program + "'");
	case ChildStage::Fds:
		return errnoError(failure.error, "cannot pass the sockets to '" + program + "'");
	case ChildStage::Exec:
		break;
	}
	return errnoError(failure.error, "cannot execute '" + program + "'");
}

} // namespace

std::string encodeManifest(std::string_view migrationId, std::string_view state,
			   const std::vector<HandedSocket> &sockets)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	auto string = [&](std::string_view s) { w.String(s.data(), static_cast<rapidjson::SizeType>(s.size())); };
	w.StartObject();
	w.Key("version");
	w.Uint(1);
	w.Key("migration");
	string(migrationId);
	w.Key("state");
	string(base64Encode(state));
	w.Key("connections");
	w.StartArray();
	for (size_t i = 0; i < sockets.size(); i++) {
		const HandedSocket &s = sockets[i];
		w.StartObject();
		w.Key("fd");
		w.Int(kFirstFd + static_cast<int>(i));
		w.Key("name");
		string(s.name);
		w.Key("local");
		string(s.local.family == AF_UNSPEC ? std::string() : s.local.toString());
		w.Key("remote");
		string(s.remote.family == AF_UNSPEC ? std::string() : s.remote.toString());
		w.Key("state");
		string(s.state);
		w.EndObject();
	}
	w.EndArray();
	w.EndObject();
	return std::string(buffer.GetString(), buffer.GetSize());
}

Status LaunchedWorkload::terminate(int signal) const
{
	if (::syscall(SYS_pidfd_send_signal, pidfd_.get(), signal, nullptr, 0) != 0)
		return errnoError("cannot signal the workload").at("pid", std::to_string(pid_));
	return {};
}

Result<WorkloadExit> LaunchedWorkload::wait(std::chrono::milliseconds timeout) const
{
	pollfd p{pidfd_.get(), POLLIN, 0};
	int ready;
	do
		ready = ::poll(&p, 1, static_cast<int>(timeout.count()));
	while (ready < 0 && errno == EINTR);
	if (ready < 0)
		return errnoError("cannot wait for the workload").at("pid", std::to_string(pid_));
	if (ready == 0)
		return makeError("the workload is still running", ETIMEDOUT).at("pid", std::to_string(pid_));
	siginfo_t info{};
	if (::waitid(P_PIDFD, static_cast<id_t>(pidfd_.get()), &info, WEXITED) != 0)
		return errnoError("cannot reap the workload").at("pid", std::to_string(pid_));
	WorkloadExit exit;
	exit.exited = info.si_code == CLD_EXITED;
	(exit.exited ? exit.code : exit.signal) = info.si_status;
	return exit;
}

Result<LaunchedWorkload> launchWorkload(const LaunchRequest &request)
{
	auto withContext = [&](Error error) {
		return std::move(error).at("migration", request.migrationId).at("phase", "launch");
	};
	if (auto valid = checkRequest(request); !valid)
		return withContext(std::move(valid).error());
	auto manifest = writeManifest(request);
	if (!manifest)
		return withContext(std::move(manifest).error());
	const std::string &manifestPath = manifest.value();
	auto fail = [&](Error error) {
		::unlink(manifestPath.c_str());
		return withContext(std::move(error));
	};

	std::vector<std::string> argvStorage = request.argv;
	std::vector<std::string> envStorage = buildEnvironment(request, manifestPath);
	std::vector<std::string> candidateStorage = executableCandidates(request.argv.front(), envStorage);

	int pipeFds[2];
	if (::pipe2(pipeFds, O_CLOEXEC) != 0)
		return fail(errnoError("cannot create the launch pipe"));
	UniqueFd errorRead(pipeFds[0]);
	UniqueFd errorWrite(pipeFds[1]);

	ChildPlan plan;
	plan.netnsFd = request.netnsFd;
	plan.errorFd = errorWrite.get();
	for (const HandedSocket &s : request.sockets)
		plan.sources.push_back(s.fd);
	plan.copies.resize(plan.sources.size(), -1);
	for (std::string &arg : argvStorage)
		plan.argv.push_back(arg.data());
	plan.argv.push_back(nullptr);
	for (std::string &entry : envStorage)
		plan.envp.push_back(entry.data());
	plan.envp.push_back(nullptr);
	plan.listenPidDigits = envStorage.back().data() + kListenPidPrefix.size();
	for (const std::string &candidate : candidateStorage)
		plan.candidates.push_back(candidate.c_str());
	plan.candidates.push_back(nullptr);

	// No signal handler of the agent may run in the child before it
	// resets them.
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
		return fail(errnoError(forkErrno, "cannot fork the workload"));
	UniqueFd pidfd(rawPidfd);
	errorWrite.reset();

	// The pipe closes on exec (success) or carries a ChildFailure.
	ChildFailure failure{};
	ssize_t n;
	do
		n = ::read(errorRead.get(), &failure, sizeof(failure));
	while (n < 0 && errno == EINTR);
	if (n != 0) {
		int readErrno = errno;
		::waitpid(pid, nullptr, 0);
		if (n == static_cast<ssize_t>(sizeof(failure)))
			return fail(childError(failure, request));
		return fail(errnoError(n < 0 ? readErrno : EIO, "the workload's launch report was cut short"));
	}
	if (!pidfd) {
		// fork() fallback and pidfd_open failed: a workload nobody can
		// follow is not started at all. Still our unreaped child, so
		// its pid cannot have been reused.
		Error error = errnoError("cannot open a pidfd for the workload").at("pid", std::to_string(pid));
		::kill(pid, SIGKILL);
		::waitpid(pid, nullptr, 0);
		return fail(std::move(error));
	}
	FERRY_LOG(logLauncher, Info) << "workload started" << kv("pid", pid) << kv("program", request.argv.front())
				     << kv("sockets", request.sockets.size()) << kv("migration", request.migrationId);
	return LaunchedWorkload(pid, std::move(pidfd), manifestPath);
}

} // namespace ferry::migration
