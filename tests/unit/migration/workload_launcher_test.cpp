// launchWorkload without a namespace change (no privileges needed): the fd
// layout, the environment, the manifest, exec failures and the owner
// object. tests/netns/migration/workload_launcher_test.cpp covers the
// target namespace with TCP connections.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>

#include "migration/workload_launcher.h"
#include "workload_test_support.h"

using namespace ferry;
using namespace ferry::migration;
using namespace ferry::test;

namespace {

struct SocketPair {
	UniqueFd handed;
	UniqueFd peer;
};

// At fd numbers >= 100, out of the way of the low numbers tests place
// sockets at.
SocketPair socketPair()
{
	int fds[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds) == 0);
	UniqueFd a(fds[0]), b(fds[1]);
	SocketPair pair{UniqueFd(::fcntl(a.get(), F_DUPFD_CLOEXEC, 100)), UniqueFd(::fcntl(b.get(), F_DUPFD_CLOEXEC, 100))};
	REQUIRE(pair.handed);
	REQUIRE(pair.peer);
	return pair;
}

uint64_t inodeOf(int fd)
{
	struct stat st{};
	REQUIRE(::fstat(fd, &st) == 0);
	return st.st_ino;
}

// Reads exactly `size` bytes from `fd` within a few seconds.
std::string readExactly(int fd, size_t size)
{
	std::string out;
	while (out.size() < size) {
		pollfd p{fd, POLLIN, 0};
		if (::poll(&p, 1, 5000) != 1)
			break;
		char buffer[256];
		ssize_t n = ::read(fd, buffer, std::min(sizeof(buffer), size - out.size()));
		if (n <= 0)
			break;
		out.append(buffer, static_cast<size_t>(n));
	}
	return out;
}

LaunchRequest probeRequest(const TempDir &dir, const std::string &report, std::vector<std::string> extra = {})
{
	LaunchRequest request;
	request.argv = {FERRY_TEST_WORKLOAD, "probe", report};
	request.argv.insert(request.argv.end(), extra.begin(), extra.end());
	request.manifestDirectory = dir.path();
	request.migrationId = "m-launch";
	return request;
}

// Kills and reaps, through pidfds (never a reused pid), every workload a
// test case started, however the test case ends.
struct Janitor {
	std::vector<UniqueFd> pidfds;
	~Janitor()
	{
		for (const UniqueFd &pidfd : pidfds) {
			::syscall(SYS_pidfd_send_signal, pidfd.get(), SIGKILL, nullptr, 0);
			siginfo_t info{};
			::waitid(P_PIDFD, static_cast<id_t>(pidfd.get()), &info, WEXITED);
		}
	}
};

Result<LaunchedWorkload> launch(Janitor &janitor, const LaunchRequest &request)
{
	auto launched = launchWorkload(request);
	if (launched.ok())
		janitor.pidfds.emplace_back(::fcntl(launched->pidfd(), F_DUPFD_CLOEXEC, 0));
	return launched;
}

// Runs the probe to its end and returns its report.
std::map<std::string, std::string> runProbe(Janitor &janitor, const LaunchRequest &request,
					    const std::string &report, pid_t *pid = nullptr)
{
	auto launched = launch(janitor, request);
	REQUIRE_MESSAGE(launched.ok(), launched.error().message());
	if (pid)
		*pid = launched->pid();
	auto exit = launched->wait(10s);
	REQUIRE_MESSAGE(exit.ok(), exit.error().message());
	CHECK(*exit == WorkloadExit{true, 0, 0});
	return readReport(report);
}

// Puts a duplicate of `fd` at number `target` (close-on-exec, as the
// agent's fds are) for the test case, and gives back whatever the test
// process had there (an fd inherited from meson or a shell) afterwards.
class FdAt {
public:
	FdAt(int fd, int target) : target_(target)
	{
		int flags = ::fcntl(target, F_GETFD);
		if (flags >= 0) {
			saved_.reset(::fcntl(target, F_DUPFD_CLOEXEC, 64));
			REQUIRE(saved_);
			savedCloexec_ = flags & FD_CLOEXEC;
		}
		REQUIRE(::dup3(fd, target, O_CLOEXEC) == target);
	}
	~FdAt()
	{
		if (saved_)
			::dup3(saved_.get(), target_, savedCloexec_ ? O_CLOEXEC : 0);
		else
			::close(target_);
	}
	FdAt(const FdAt &) = delete;
	FdAt &operator=(const FdAt &) = delete;

private:
	int target_;
	UniqueFd saved_;
	bool savedCloexec_ = false;
};

bool noChildren()
{
	return ::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD;
}

} // namespace

TEST_CASE("sockets become fds 3.. in order, whatever numbers they had, and nothing else leaks")
{
	Janitor janitor;
	// Sources inside the target range, out of order, one already at its
	// target, one listed twice: the case where a naive dup2 loop clobbers
	// a source before it is moved.
	SocketPair p0 = socketPair();
	SocketPair p1 = socketPair();
	SocketPair p2 = socketPair();
	SocketPair p3 = socketPair();
	FdAt at3(p0.handed.get(), 3);
	FdAt at5(p1.handed.get(), 5);
	FdAt at7(p2.handed.get(), 7);
	FdAt at9(p3.handed.get(), 9);
	// An fd without FD_CLOEXEC, above the target range, that the
	// workload must not inherit.
	int leaky[2];
	REQUIRE(::pipe(leaky) == 0);
	UniqueFd leakyRead(leaky[0]), leakyWrite(leaky[1]);
	UniqueFd leakyHigh(::fcntl(leakyRead.get(), F_DUPFD, 20));
	REQUIRE(leakyHigh);
	REQUIRE(::fcntl(leakyHigh.get(), F_GETFD) == 0);

	TempDir dir;
	std::string report = dir.file("report");
	LaunchRequest request = probeRequest(dir, report);
	Endpoint none;
	request.sockets = {
		{7, "c7", none, none, "ESTABLISHED"},      // 7 -> 3
		{3, "c3", none, none, "ESTABLISHED"},      // 3 -> 4
		{5, "c5", none, none, "ESTABLISHED"},      // 5 -> 5
		{3, "c3again", none, none, "ESTABLISHED"}, // 3 -> 6
		{9, "c9", none, none, "ESTABLISHED"},      // 9 -> 7
	};
	auto result = runProbe(janitor, request, report);

	CHECK(result["listen_fds"] == "5");
	CHECK(result["listen_fdnames"] == "c7:c3:c5:c3again:c9");
	CHECK(result["open_fds"] == "0,1,2,3,4,5,6,7");
	CHECK(result["fd3"] == "inode:" + std::to_string(inodeOf(7)) + ",cloexec:0,listening:0");
	CHECK(result["fd4"] == "inode:" + std::to_string(inodeOf(3)) + ",cloexec:0,listening:0");
	CHECK(result["fd5"] == "inode:" + std::to_string(inodeOf(5)) + ",cloexec:0,listening:0");
	CHECK(result["fd6"] == "inode:" + std::to_string(inodeOf(3)) + ",cloexec:0,listening:0");
	CHECK(result["fd7"] == "inode:" + std::to_string(inodeOf(9)) + ",cloexec:0,listening:0");

	// What the workload wrote into each fd arrives at that socket's peer.
	CHECK(readExactly(p2.peer.get(), 7) == "fd3 c7\n");
	CHECK(readExactly(p0.peer.get(), 7 + 12) == "fd4 c3\nfd6 c3again\n");
	CHECK(readExactly(p1.peer.get(), 7) == "fd5 c5\n");
	CHECK(readExactly(p3.peer.get(), 7) == "fd7 c9\n");

	// Borrowed: the agent's fds are where they were, still close-on-exec.
	for (int fd : {3, 5, 7, 9}) {
		CAPTURE(fd);
		CHECK(::fcntl(fd, F_GETFD) == FD_CLOEXEC);
	}
	CHECK(::write(3, "x", 1) == 1);
	CHECK(readExactly(p0.peer.get(), 1) == "x");
}

TEST_CASE("the workload gets LISTEN_*, FERRY_MANIFEST, the extra environment, and a clean signal state")
{
	Janitor janitor;
	TempDir dir;
	std::string report = dir.file("report");
	SocketPair conn = socketPair();
	LaunchRequest request = probeRequest(dir, report);
	request.state = std::string("\0state\xff", 7);
	auto local = Endpoint::parse("198.51.100.10:7000");
	auto remote = Endpoint::parse("198.51.100.20:41234");
	REQUIRE(local.ok());
	REQUIRE(remote.ok());
	request.sockets = {{conn.handed.get(), "conn0", *local, *remote, "ESTABLISHED"}};
	request.environment = {{"FERRY_TEST_EXTRA", "x y=z"}};

	// What the agent has must not reach the workload: its own LISTEN_*
	// and FERRY_MANIFEST, SIGPIPE ignored, SIGTERM blocked.
	::setenv("LISTEN_FDS", "99", 1);
	::setenv("FERRY_MANIFEST", "/nonexistent", 1);
	::setenv("FERRY_TEST_EXTRA", "from the agent", 1);
	auto previousPipe = ::signal(SIGPIPE, SIG_IGN);
	sigset_t term, previousMask;
	::sigemptyset(&term);
	::sigaddset(&term, SIGTERM);
	::pthread_sigmask(SIG_BLOCK, &term, &previousMask);
	pid_t pid = 0;
	auto result = runProbe(janitor, request, report, &pid);
	::pthread_sigmask(SIG_SETMASK, &previousMask, nullptr);
	::signal(SIGPIPE, previousPipe);
	::unsetenv("LISTEN_FDS");
	::unsetenv("FERRY_MANIFEST");
	::unsetenv("FERRY_TEST_EXTRA");

	CHECK(result["listen_pid"] == std::to_string(pid));
	CHECK(result["pid"] == std::to_string(pid));
	CHECK(result["listen_fds"] == "1");
	CHECK(result["listen_fdnames"] == "conn0");
	CHECK(result["extra"] == "x y=z");
	CHECK(result["session_leader"] == "1");
	CHECK(result["sigpipe_default"] == "1");
	CHECK(result["sigterm_blocked"] == "0");

	std::string manifestPath = result["manifest_path"];
	CHECK(manifestPath.rfind(dir.path() + "/ferry-manifest-m-launch-", 0) == 0);
	CHECK(result["manifest_mode"] == std::to_string(0600));
	CHECK(result["manifest"] == encodeManifest("m-launch", request.state, request.sockets));
	CHECK(result["manifest"] ==
	      "{\"version\":1,\"migration\":\"m-launch\",\"state\":\"AHN0YXRl/w==\",\"connections\":[{\"fd\":3,"
	      "\"name\":\"conn0\",\"local\":\"198.51.100.10:7000\",\"remote\":\"198.51.100.20:41234\","
	      "\"state\":\"ESTABLISHED\"}]}");
	CHECK(readExactly(conn.peer.get(), 10) == "fd3 conn0\n");
}

TEST_CASE("exec failures come back as errors, and leave no child and no manifest")
{
	Janitor janitor;
	TempDir dir;
	REQUIRE(noChildren());

	LaunchRequest request;
	request.manifestDirectory = dir.path();
	request.migrationId = "m-fail";

	request.argv = {"/nonexistent/ferry-no-such-program", "arg"};
	auto launched = launch(janitor, request);
	REQUIRE_FALSE(launched.ok());
	CHECK(launched.error().code == ENOENT);
	CHECK(launched.error().message().rfind(
		      "cannot execute '/nonexistent/ferry-no-such-program': No such file or directory", 0) == 0);
	CHECK(launched.error().context.find("migration=m-fail") != std::string::npos);

	// Searched along the PATH of the workload's environment.
	request.argv = {"ferry-no-such-program"};
	request.environment = {{"PATH", dir.path() + ":/nonexistent"}};
	launched = launch(janitor, request);
	REQUIRE_FALSE(launched.ok());
	CHECK(launched.error().code == ENOENT);
	CHECK(launched.error().what == "cannot execute 'ferry-no-such-program'");

	// Found but not executable: EACCES, as execvp reports it.
	{
		std::ofstream script(dir.file("not-executable"));
		script << "#!/bin/sh\nexit 0\n";
	}
	REQUIRE(::chmod(dir.file("not-executable").c_str(), 0644) == 0);
	request.argv = {"not-executable"};
	launched = launch(janitor, request);
	REQUIRE_FALSE(launched.ok());
	CHECK(launched.error().code == EACCES);
	CHECK(launched.error().message().find("Permission denied") != std::string::npos);

	// ...and once executable, found in that PATH and run.
	REQUIRE(::chmod(dir.file("not-executable").c_str(), 0755) == 0);
	launched = launch(janitor, request);
	REQUIRE_MESSAGE(launched.ok(), launched.error().message());
	auto exit = launched->wait(5s);
	REQUIRE(exit.ok());
	CHECK(exit->exited);
	CHECK(exit->code == 0);
	::unlink(launched->manifestPath().c_str());

	CHECK(noChildren());
	CHECK(dir.entries() == 1); // the script; every failed launch removed its manifest
}

TEST_CASE("a netns fd that is not a network namespace fails clearly")
{
	Janitor janitor;
	TempDir dir;
	int fds[2];
	REQUIRE(::pipe2(fds, O_CLOEXEC) == 0);
	UniqueFd readEnd(fds[0]), writeEnd(fds[1]);
	LaunchRequest request = probeRequest(dir, dir.file("report"));
	request.netnsFd = readEnd.get();
	auto launched = launch(janitor, request);
	REQUIRE_FALSE(launched.ok());
	CHECK(launched.error().code == EINVAL);
	CHECK(launched.error().what.find("cannot enter the target network namespace") == 0);
	CHECK(noChildren());
}

TEST_CASE("bad requests are refused before anything starts")
{
	Janitor janitor;
	TempDir dir;
	SocketPair conn = socketPair();
	auto refused = [&](LaunchRequest request, int code, const char *text) {
		auto launched = launch(janitor, request);
		REQUIRE_FALSE(launched.ok());
		CHECK(launched.error().code == code);
		CHECK_MESSAGE(launched.error().what.find(text) != std::string::npos, launched.error().message());
	};
	LaunchRequest good = probeRequest(dir, dir.file("report"));
	good.sockets = {{conn.handed.get(), "conn0", {}, {}, "ESTABLISHED"}};

	LaunchRequest r = good;
	r.argv.clear();
	refused(r, EINVAL, "command is empty");
	r = good;
	r.migrationId = "../../etc";
	refused(r, EINVAL, "migration id");
	r = good;
	r.environment = {{"LISTEN_PID", "1"}};
	refused(r, EINVAL, "set by the launcher");
	r = good;
	r.environment = {{"A=B", "1"}};
	refused(r, EINVAL, "invalid name");
	r = good;
	r.sockets[0].name = "a:b";
	refused(r, EINVAL, "without ':'");
	r = good;
	r.sockets[0].name = "";
	refused(r, EINVAL, "socket name");
	r = good;
	r.sockets[0].fd = 1000;
	refused(r, EBADF, "not an open fd");
	r = good;
	r.manifestDirectory = dir.file("missing");
	refused(r, ENOENT, "cannot create the workload manifest");

	CHECK(noChildren());
	CHECK(dir.entries() == 0);
}

TEST_CASE("the owner object: wait, terminate, and no kill when it goes away")
{
	Janitor janitor;
	TempDir dir;
	std::string report = dir.file("report");
	pid_t pid = 0;
	{
		auto launched = launch(janitor, probeRequest(dir, report, {"--stay"}));
		REQUIRE_MESSAGE(launched.ok(), launched.error().message());
		pid = launched->pid();
		REQUIRE(eventually([&] { return ::access(report.c_str(), F_OK) == 0; }));
		auto running = launched->wait(100ms);
		REQUIRE_FALSE(running.ok());
		CHECK(running.error().code == ETIMEDOUT);
	}
	// The owner is gone; the workload is not.
	CHECK(::kill(pid, 0) == 0);
	std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
	std::string statLine;
	std::getline(stat, statLine);
	CHECK(statLine.substr(statLine.rfind(')') + 2, 1) != "Z");
	::kill(pid, SIGKILL);
	int status = 0;
	REQUIRE(::waitpid(pid, &status, 0) == pid);
	CHECK(WIFSIGNALED(status));

	auto launched = launch(janitor, probeRequest(dir, report, {"--stay"}));
	REQUIRE(launched.ok());
	REQUIRE(launched->terminate(SIGTERM).ok());
	auto exit = launched->wait(5s);
	REQUIRE_MESSAGE(exit.ok(), exit.error().message());
	CHECK(*exit == WorkloadExit{false, 0, SIGTERM});
	auto again = launched->wait(100ms);
	REQUIRE_FALSE(again.ok());
	CHECK(again.error().code == ECHILD);
	CHECK(noChildren());
}
