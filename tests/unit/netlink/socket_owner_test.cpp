// Socket owners without privileges: the /proc parsers, the errors that
// the kernel gives only on other kernels or to other users (injected
// through the PidfdCalls seam), and mapping this process's own sockets.
#include <doctest/doctest.h>

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <limits>
#include <string>

#include "netlink/socket_owner.h"

using namespace ferry;
using namespace ferry::netlink;

namespace {

// What the fake syscalls do; set by each test case.
struct FakeKernel {
	int openErrno = 0;   // pidfd_open fails with this when not 0
	int getfdErrno = 0;  // pidfd_getfd fails with this when not 0
	int fdToGive = -1;   // else pidfd_getfd returns a dup of this
	int opened = 0;
	int lastTarget = -1;
};
FakeKernel fake;

int fakeOpen(pid_t, unsigned)
{
	if (fake.openErrno) {
		errno = fake.openErrno;
		return -1;
	}
	++fake.opened;
	return ::open("/dev/null", O_RDONLY | O_CLOEXEC); // stands in for a pidfd
}

int fakeGetfd(int, int targetFd, unsigned)
{
	fake.lastTarget = targetFd;
	if (fake.getfdErrno) {
		errno = fake.getfdErrno;
		return -1;
	}
	return ::fcntl(fake.fdToGive, F_DUPFD_CLOEXEC, 0);
}

SocketTaker fakeTaker()
{
	return SocketTaker(PidfdCalls{fakeOpen, fakeGetfd});
}

uint64_t inodeOf(int fd)
{
	struct stat st{};
	REQUIRE(::fstat(fd, &st) == 0);
	return st.st_ino;
}

} // namespace

TEST_CASE("parseSocketLink reads socket:[inode] and nothing else")
{
	CHECK(detail::parseSocketLink("socket:[12345]") == 12345u);
	CHECK(detail::parseSocketLink("socket:[18446744073709551615]") == std::numeric_limits<uint64_t>::max());
	CHECK_FALSE(detail::parseSocketLink("socket:[18446744073709551616]").has_value());
	CHECK_FALSE(detail::parseSocketLink("socket:[]").has_value());
	CHECK_FALSE(detail::parseSocketLink("socket:[12a]").has_value());
	CHECK_FALSE(detail::parseSocketLink("socket:[12").has_value());
	CHECK_FALSE(detail::parseSocketLink("pipe:[12345]").has_value());
	CHECK_FALSE(detail::parseSocketLink("anon_inode:[eventfd]").has_value());
	CHECK_FALSE(detail::parseSocketLink("/tmp/socket:[1]").has_value());
	CHECK_FALSE(detail::parseSocketLink("").has_value());
}

TEST_CASE("parseParentPid finds the 4th field even when the command name holds spaces and parentheses")
{
	CHECK(detail::parseParentPid("123 (bash) S 45 123 123 0 -1") == 45);
	CHECK(detail::parseParentPid("7 (a) b) (c) R 99 1 2") == 99);
	CHECK(detail::parseParentPid("1 (init) S 0 1 1") == 0);
	CHECK_FALSE(detail::parseParentPid("garbage").has_value());
	CHECK_FALSE(detail::parseParentPid("5 (x)").has_value());
	CHECK_FALSE(detail::parseParentPid("5 (x) S").has_value());
	CHECK_FALSE(detail::parseParentPid("5 (x) S abc 1").has_value());
}

TEST_CASE("the kernel's refusals become errors that say what to do")
{
	fake = {};
	SocketTaker taker = fakeTaker();

	SUBCASE("no pidfd_open (kernel before 5.3)")
	{
		fake.openErrno = ENOSYS;
		Result<UniqueFd> r = taker.take(1234, 5);
		REQUIRE_FALSE(r.ok());
		CHECK(r.error().code == ENOSYS);
		CHECK(r.error().what.find("Linux 5.6") != std::string::npos);
		CHECK(r.error().context == "pid=1234 phase=take-socket");
	}
	SUBCASE("no pidfd_getfd (kernel 5.3 to 5.5)")
	{
		fake.getfdErrno = ENOSYS;
		Result<UniqueFd> r = taker.take(1234, 5);
		REQUIRE_FALSE(r.ok());
		CHECK(r.error().code == ENOSYS);
		CHECK(r.error().what.find("pidfd_getfd") != std::string::npos);
		CHECK(r.error().context == "fd=5 pid=1234 phase=take-socket");
	}
	SUBCASE("ptrace access refused")
	{
		fake.getfdErrno = EPERM;
		Result<UniqueFd> r = taker.take(1234, 5);
		REQUIRE_FALSE(r.ok());
		CHECK(r.error().code == EPERM);
		CHECK(r.error().what.find("CAP_SYS_PTRACE") != std::string::npos);
		CHECK(r.error().what.find("1234") != std::string::npos);
		CHECK(r.error().message().find("Operation not permitted") != std::string::npos);
	}
	SUBCASE("process gone between pidfd_open and pidfd_getfd")
	{
		fake.getfdErrno = ESRCH;
		Result<UniqueFd> r = taker.take(1234, 5);
		REQUIRE_FALSE(r.ok());
		CHECK(r.error().code == ESRCH);
		CHECK(r.error().what.find("exited") != std::string::npos);
	}
	SUBCASE("an unexpected errno is passed on")
	{
		fake.getfdErrno = EMFILE;
		Result<UniqueFd> r = taker.take(1234, 5);
		REQUIRE_FALSE(r.ok());
		CHECK(r.error().code == EMFILE);
	}
}

TEST_CASE("take checks the fd it got: a socket, and the expected one")
{
	fake = {};
	SocketTaker taker = fakeTaker();
	int pair[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
	UniqueFd a(pair[0]), b(pair[1]);

	fake.fdToGive = a.get();
	Result<UniqueFd> taken = taker.take(1234, 9, inodeOf(a.get()));
	REQUIRE(taken.ok());
	CHECK(fake.lastTarget == 9);
	CHECK(inodeOf(taken->get()) == inodeOf(a.get()));
	CHECK(taker.take(1234, 9).ok()); // no inode to check

	Result<UniqueFd> other = taker.take(1234, 9, inodeOf(b.get()));
	REQUIRE_FALSE(other.ok());
	CHECK(other.error().code == ESTALE);

	UniqueFd file(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	fake.fdToGive = file.get();
	Result<UniqueFd> notSocket = taker.take(1234, 9);
	REQUIRE_FALSE(notSocket.ok());
	CHECK(notSocket.error().code == ENOTSOCK);
}

TEST_CASE("this process's own sockets map to its pid and fd numbers")
{
	int pair[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pair) == 0);
	UniqueFd a(pair[0]), b(pair[1]);
	UniqueFd dup(::fcntl(a.get(), F_DUPFD_CLOEXEC, a.get() + 1));
	REQUIRE(dup.isValid());

	Result<std::vector<pid_t>> tree = processTree(::getpid());
	REQUIRE(tree.ok());
	CHECK(std::find(tree->begin(), tree->end(), ::getpid()) != tree->end());

	Result<SocketOwnerMap> owners = mapSocketOwners(::getpid());
	REQUIRE_MESSAGE(owners.ok(), owners.error().message());
	const std::vector<SocketHolder> *holdersA = owners->find(inodeOf(a.get()));
	REQUIRE(holdersA != nullptr);
	CHECK(*holdersA == std::vector<SocketHolder>{{::getpid(), a.get()}, {::getpid(), dup.get()}});
	const std::vector<SocketHolder> *holdersB = owners->find(inodeOf(b.get()));
	REQUIRE(holdersB != nullptr);
	CHECK(*holdersB == std::vector<SocketHolder>{{::getpid(), b.get()}});

	UniqueFd file(::open("/dev/null", O_RDONLY | O_CLOEXEC));
	CHECK(owners->find(inodeOf(file.get())) == nullptr);

	Result<SocketOwnerMap> none = mapSocketOwners(-5);
	REQUIRE_FALSE(none.ok());
	CHECK(none.error().code == EINVAL);
}
