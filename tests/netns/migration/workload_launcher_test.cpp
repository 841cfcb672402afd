// launchWorkload into a target network namespace, with real TCP
// connections over IPv4 and IPv6 between two test hosts: the workload runs
// in the destination's namespace, holds the connections as fds 3.., and
// what it writes reaches the remote peers.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/syscall.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <cerrno>

#include "base/netns.h"
#include "migration/workload_launcher.h"
#include "test_network.h"
#include "../../unit/migration/workload_test_support.h"

using namespace ferry;
using namespace ferry::migration;
using namespace ferry::test;

namespace {

Endpoint localOf(int fd)
{
	sockaddr_storage ss{};
	socklen_t length = sizeof(ss);
	REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &length) == 0);
	auto e = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), length);
	REQUIRE(e.ok());
	return *e;
}

Endpoint remoteOf(int fd)
{
	sockaddr_storage ss{};
	socklen_t length = sizeof(ss);
	REQUIRE(::getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &length) == 0);
	auto e = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), length);
	REQUIRE(e.ok());
	return *e;
}

// A listener bound to `address` port 0 inside the netns of `netnsFd`.
UniqueFd listenIn(int netnsFd, const char *address)
{
	auto listener = runInNetns(netnsFd, [&]() -> Result<UniqueFd> {
		auto endpoint = Endpoint::parse(std::string(address));
		if (!endpoint)
			return endpoint.error();
		UniqueFd fd(::socket(endpoint->family, SOCK_STREAM | SOCK_CLOEXEC, 0));
		socklen_t length = 0;
		sockaddr_storage ss = endpoint->toSockaddr(length);
		if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), length) != 0 || ::listen(fd.get(), 4) != 0)
			return errnoError("listen");
		return fd;
	});
	REQUIRE_MESSAGE(listener.ok(), listener.error().message());
	return std::move(listener).value();
}

// Connects from the netns of `netnsFd` to `listener`'s address.
UniqueFd connectFrom(int netnsFd, int listener)
{
	Endpoint target = localOf(listener);
	auto client = runInNetns(netnsFd, [&]() -> Result<UniqueFd> {
		UniqueFd fd(::socket(target.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
		socklen_t length = 0;
		sockaddr_storage ss = target.toSockaddr(length);
		if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), length) != 0)
			return errnoError("connect to " + target.toString());
		return fd;
	});
	REQUIRE_MESSAGE(client.ok(), client.error().message());
	return std::move(client).value();
}

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

uint64_t inodeOf(int fd)
{
	struct stat st{};
	REQUIRE(::fstat(fd, &st) == 0);
	return st.st_ino;
}

} // namespace

TEST_CASE("the workload runs in the target netns with its IPv4 and IPv6 connections as fds 3..")
{
	TestNetwork network;
	TestHost destination = network.addHost("dst", {"198.51.100.1/24", "2001:db8::1/64"});
	TestHost peer = network.addHost("peer", {"198.51.100.2/24", "2001:db8::2/64"});
	UniqueFd destinationNs = destination.open();
	UniqueFd peerNs = peer.open();

	UniqueFd listener4 = listenIn(destinationNs.get(), "198.51.100.1:0");
	UniqueFd listener6 = listenIn(destinationNs.get(), "[2001:db8::1]:0");
	UniqueFd client4 = connectFrom(peerNs.get(), listener4.get());
	UniqueFd client6 = connectFrom(peerNs.get(), listener6.get());
	UniqueFd conn4(::accept4(listener4.get(), nullptr, nullptr, SOCK_CLOEXEC));
	UniqueFd conn6(::accept4(listener6.get(), nullptr, nullptr, SOCK_CLOEXEC));
	REQUIRE(conn4);
	REQUIRE(conn6);

	TempDir dir;
	std::string report = dir.file("report");
	LaunchRequest request;
	request.argv = {FERRY_TEST_WORKLOAD, "probe", report};
	request.netnsFd = destinationNs.get();
	request.manifestDirectory = dir.path();
	request.migrationId = "m-netns";
	request.state = "position=42";
	request.sockets = {
		{conn4.get(), "conn0", localOf(conn4.get()), remoteOf(conn4.get()), "ESTABLISHED"},
		{conn6.get(), "conn1", localOf(conn6.get()), remoteOf(conn6.get()), "ESTABLISHED"},
		{listener4.get(), "listen0", localOf(listener4.get()), Endpoint{}, "LISTEN"},
	};
	CHECK(request.sockets[0].remote.toString().rfind("198.51.100.2:", 0) == 0);
	CHECK(request.sockets[1].remote.toString().rfind("[2001:db8::2]:", 0) == 0);

	auto launched = launchWorkload(request);
	REQUIRE_MESSAGE(launched.ok(), launched.error().message());
	UniqueFd pidfd(::fcntl(launched->pidfd(), F_DUPFD_CLOEXEC, 0));
	struct KillOnExit {
		int pidfd;
		~KillOnExit()
		{
			::syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0);
			siginfo_t info{};
			::waitid(P_PIDFD, static_cast<id_t>(pidfd), &info, WEXITED);
		}
	} killOnExit{pidfd.get()};
	auto exit = launched->wait(10s);
	REQUIRE_MESSAGE(exit.ok(), exit.error().message());
	CHECK(*exit == WorkloadExit{true, 0, 0});

	auto result = readReport(report);
	auto expectedNetns = netnsInode(destinationNs.get());
	REQUIRE(expectedNetns.ok());
	auto agentNetns = netnsInode(UniqueFd(::open("/proc/self/ns/net", O_RDONLY | O_CLOEXEC)).get());
	REQUIRE(agentNetns.ok());
	CHECK(*expectedNetns != *agentNetns);
	CHECK(result["netns"] == std::to_string(*expectedNetns));

	CHECK(result["listen_fds"] == "3");
	CHECK(result["listen_fdnames"] == "conn0:conn1:listen0");
	CHECK(result["listen_pid"] == std::to_string(launched->pid()));
	CHECK(result["open_fds"] == "0,1,2,3,4,5");
	CHECK(result["fd3"] == "inode:" + std::to_string(inodeOf(conn4.get())) + ",cloexec:0,listening:0");
	CHECK(result["fd4"] == "inode:" + std::to_string(inodeOf(conn6.get())) + ",cloexec:0,listening:0");
	CHECK(result["fd5"] == "inode:" + std::to_string(inodeOf(listener4.get())) + ",cloexec:0,listening:1");
	CHECK(result["manifest"] == encodeManifest("m-netns", "position=42", request.sockets));
	CHECK(result["manifest"].find("\"remote\":\"[2001:db8::2]:") != std::string::npos);
	CHECK(result["manifest"].find("\"state\":\"cG9zaXRpb249NDI=\"") != std::string::npos);

	// The bytes the workload wrote crossed the bridge to the peers.
	CHECK(readExactly(client4.get(), 10) == "fd3 conn0\n");
	CHECK(readExactly(client6.get(), 10) == "fd4 conn1\n");

	// The agent's own fds still work: the sockets were only borrowed.
	CHECK(::write(conn6.get(), "more", 4) == 4);
	CHECK(readExactly(client6.get(), 4) == "more");
	::unlink(launched->manifestPath().c_str());
}

TEST_CASE("exec of a missing program in a target netns gives a clear error")
{
	TestNetwork network;
	const TestHost &destination = network.addIsolatedHost("dst");
	UniqueFd destinationNs = destination.open();
	TempDir dir;
	LaunchRequest request;
	request.argv = {"ferry-no-such-workload"};
	request.netnsFd = destinationNs.get();
	request.manifestDirectory = dir.path();
	request.migrationId = "m-missing";
	auto launched = launchWorkload(request);
	REQUIRE_FALSE(launched.ok());
	CHECK(launched.error().code == ENOENT);
	CHECK(launched.error().message() ==
	      "cannot execute 'ferry-no-such-workload': No such file or directory [phase=launch migration=m-missing]");
	CHECK(dir.entries() == 0);
	CHECK((::waitpid(-1, nullptr, WNOHANG) == -1 && errno == ECHILD));
}
