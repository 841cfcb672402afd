// The runner under the runtime adapters, on plain programs: stdout and
// stderr apart, exit codes, fds landing at 3, 4, ..., the timeout, a
// daemon that keeps the pipes, and the log-file mode runc create needs.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <string>

#include "base/unique_fd.h"
#include "container/runtime_command.h"

using namespace ferry;
using namespace ferry::container;

TEST_CASE("output, error and exit code of a program found along PATH")
{
	auto r = runCommand({"sh", "-c", "echo out; echo err >&2; exit 3"}, {});
	REQUIRE(r.ok());
	CHECK(r->out == "out\n");
	CHECK(r->err == "err\n");
	CHECK(r->exitCode == 3);
	auto killed = runCommand({"sh", "-c", "kill -9 $$"}, {});
	REQUIRE(killed.ok());
	CHECK(killed->exitCode == 128 + 9);
}

TEST_CASE("a program that does not exist is an error naming it")
{
	auto r = runCommand({"ferry-no-such-runtime"}, {});
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == ENOENT);
	CHECK(r.error().what.find("ferry-no-such-runtime") != std::string::npos);
	CHECK(runCommand({}, {}).error().code == EINVAL);
}

TEST_CASE("passed fds land at 3 and 4, in order, and no other fd of ours leaks")
{
	int a[2], b[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, a) == 0);
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, b) == 0);
	UniqueFd a0(a[0]), a1(a[1]), b0(b[0]), b1(b[1]);
	// A non-CLOEXEC fd of the agent must not reach the runtime either.
	UniqueFd stray(::open("/dev/null", O_RDONLY));
	REQUIRE(stray);

	SUBCASE("descending sources (the copy path)")
	{
		CommandOptions options;
		options.passFds = {b1.get(), a1.get()}; // b1 > a1: not ascending
		auto r = runCommand({"sh", "-c", "echo three >&3; echo four >&4; ls /proc/self/fd"}, options);
		REQUIRE(r.ok());
		CHECK(r->exitCode == 0);
		char buffer[16] = {};
		CHECK(::read(b0.get(), buffer, sizeof(buffer)) == 6);
		CHECK(std::string(buffer) == "three\n");
		char other[16] = {};
		CHECK(::read(a0.get(), other, sizeof(other)) == 5);
		CHECK(std::string(other) == "four\n");
		// ls sees 0-4 and the directory it reads, nothing else.
		CHECK(r->out == "0\n1\n2\n3\n4\n5\n");
	}
	SUBCASE("ascending sources")
	{
		CommandOptions options;
		options.passFds = {a1.get(), b1.get()};
		auto r = runCommand({"sh", "-c", "echo three >&3; echo four >&4"}, options);
		REQUIRE(r.ok());
		char buffer[16] = {};
		CHECK(::read(a0.get(), buffer, sizeof(buffer)) == 6);
		CHECK(std::string(buffer) == "three\n");
	}
	CommandOptions closed;
	closed.passFds = {999};
	CHECK(runCommand({"true"}, closed).error().code == EBADF);
}

TEST_CASE("a command past its timeout is killed and named")
{
	CommandOptions options;
	options.timeout = std::chrono::milliseconds(200);
	auto start = std::chrono::steady_clock::now();
	auto r = runCommand({"sleep", "10"}, options);
	auto took = std::chrono::steady_clock::now() - start;
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == ETIMEDOUT);
	CHECK(r.error().what.find("sleep 10") != std::string::npos);
	CHECK(took < std::chrono::seconds(3));
}

TEST_CASE("a daemon left holding stdout does not hold the call")
{
	// Like conmon or runc init: the command exits, its child keeps stdout.
	auto start = std::chrono::steady_clock::now();
	auto r = runCommand({"sh", "-c", "echo started; sleep 5 & exit 0"}, {});
	REQUIRE(r.ok());
	CHECK(r->out == "started\n");
	CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(3));
}

TEST_CASE("output to a file: appended, and its tail comes back as err")
{
	char path[] = "/tmp/ferry-runtime-command-XXXXXX";
	int fd = ::mkstemp(path);
	REQUIRE(fd >= 0);
	::close(fd);
	CommandOptions options;
	options.outputFile = path;
	auto first = runCommand({"sh", "-c", "echo one; echo two >&2"}, options);
	auto second = runCommand({"sh", "-c", "echo three >&2; exit 1"}, options);
	::unlink(path);
	REQUIRE(first.ok());
	REQUIRE(second.ok());
	CHECK(first->out.empty());
	CHECK(second->exitCode == 1);
	CHECK(second->err == "one\ntwo\nthree\n");
}

TEST_CASE("errors quote the command and the end of its stderr")
{
	CommandOutput out;
	out.exitCode = 1;
	out.err = "time=\"x\" level=error msg=\"container does not exist\"\n";
	Error e = commandError({"runc", "--root", "/tmp/my root", "state", "web"}, out, "runc cannot tell", ENOENT);
	CHECK(e.code == ENOENT);
	CHECK(e.what == "runc cannot tell: `runc --root '/tmp/my root' state web` exited with 1: time=\"x\" "
			"level=error msg=\"container does not exist\"");
	CHECK(describeCommand({"a", "it's", ""}) == "a 'it'\\''s' ''");
}

TEST_CASE("the agent's own socket activation and notify socket do not reach a runtime")
{
	::setenv("LISTEN_FDS", "3", 1);
	::setenv("LISTEN_PID", "1", 1);
	::setenv("NOTIFY_SOCKET", "/run/systemd/notify", 1);
	::setenv("FERRY_KEPT", "yes", 1);
	auto r = runCommand({"sh", "-c", "echo ${LISTEN_FDS:-none} ${LISTEN_PID:-none} ${NOTIFY_SOCKET:-none} $FERRY_KEPT"}, {});
	::unsetenv("LISTEN_FDS");
	::unsetenv("LISTEN_PID");
	::unsetenv("NOTIFY_SOCKET");
	::unsetenv("FERRY_KEPT");
	REQUIRE(r.ok());
	CHECK(r->out == "none none none yes\n");
}
