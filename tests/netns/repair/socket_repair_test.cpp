// Round trips through the real kernel: a connection between a "peer" and a
// "host" namespace is snapshotted on the host, discarded, passed through the
// image stream, restored (in the same namespace, or in a second one that has
// taken over the address) and resumed. The peer then checks, with
// position-dependent streams in both directions, that every byte arrives
// exactly once and in order.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <linux/sockios.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <optional>
#include <string>
#include <thread>

#include "base/netns.h"
#include "image_round_trip.h"
#include "repair/socket_repair.h"
#include "stream_checker.h"
#include "test_network.h"

using namespace ferry;
using namespace ferry::repair;
using ferry::test::StreamSource;
using ferry::test::StreamVerifier;
using ferry::test::TransferResult;

namespace {

// doctest would find repair::toString() by ADL and fail to print a TcpState.
std::string stateName(ferry::repair::TcpState s)
{
	return ferry::repair::toString(s);
}

enum class Family { V4, V6, Mapped };
enum class Target { SameHost, OtherHost, OtherHostAddressLater };
// How the destination restores: restore() on its own, or as ferryd does it,
// into a socket prepared ahead and with the namespace's fresh-socket
// defaults, so that options equal to them are skipped.
enum class Way { Plain, PreparedWithDefaults };
const Way kWays[] = {Way::Plain, Way::PreparedWithDefaults};

std::string wayName(Way w)
{
	return w == Way::Plain ? "plain" : "prepared socket, fresh defaults";
}

// Names for CAPTURE() return std::string: doctest prints a const char *
// as its address.
std::string familyName(Family f)
{
	return f == Family::V4 ? "ipv4" : f == Family::V6 ? "ipv6" : "ipv4-mapped";
}

struct Setup {
	Family family = Family::V4;
	// Applied to the host's listening socket (the accepted socket inherits).
	std::function<void(int)> hostListener;
	// sysctls set in the peer namespace before the connection, "a=b c=d".
	std::string peerSysctls;
};

Result<UniqueFd> makeSocket(int family)
{
	UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
	if (!fd)
		return errnoError("socket");
	return fd;
}

Endpoint endpoint(const std::string &address, uint16_t port)
{
	bool v6 = address.find(':') != std::string::npos;
	auto e = Endpoint::parse(v6 ? "[" + address + "]:" + std::to_string(port) : address + ":" + std::to_string(port));
	REQUIRE(e.ok());
	return *e;
}

int tcpState(int fd)
{
	tcp_info info{};
	socklen_t length = sizeof(info);
	REQUIRE(::getsockopt(fd, SOL_TCP, TCP_INFO, &info, &length) == 0);
	return info.tcpi_state;
}

// Waits until `pred()` holds, up to `ms` milliseconds.
bool eventually(const std::function<bool()> &pred, int ms = 3000)
{
	for (int i = 0; i < ms; i += 5) {
		if (pred())
			return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	return pred();
}

int ioctlValue(int fd, unsigned long request)
{
	int v = 0;
	REQUIRE(::ioctl(fd, request, &v) == 0);
	return v;
}

// A connection between the peer and host A, and a spare host B.
struct Connection {
	test::TestNetwork net;
	// Copies: TestNetwork's references move when it adds a host.
	test::TestHost peerHost, hostAHost, hostBHost;
	const test::TestHost *peer = &peerHost;
	const test::TestHost *hostA = &hostAHost;
	const test::TestHost *hostB = &hostBHost;
	Family family;
	std::string serviceCidr; // the host's address, moved to B by OtherHost
	std::string peerAddress;
	std::string hostAddress;
	UniqueFd listener;
	UniqueFd peerFd;
	UniqueFd hostFd;
	const test::TestHost *hostNow = nullptr; // where hostFd lives
	StreamSource toHost{0x1111}, toPeer{0x2222};
	StreamVerifier atHost{0x1111}, atPeer{0x2222};

	explicit Connection(const Setup &setup = {}) : family(setup.family)
	{
		bool v6 = family == Family::V6;
		peerAddress = v6 ? "2001:db8::1" : "198.51.100.1";
		hostAddress = v6 ? "2001:db8::2" : "198.51.100.2";
		serviceCidr = hostAddress + (v6 ? "/64" : "/24");
		peerHost = net.addHost("peer", {peerAddress + (v6 ? "/64" : "/24")});
		hostAHost = net.addHost("hostA", {serviceCidr});
		// B has an address of its own on the link, so it has a route to
		// the peer before it takes over the service address.
		hostBHost = net.addHost("hostB", {v6 ? "2001:db8::3/64" : "198.51.100.3/24"});
		hostNow = hostA;
		if (!setup.peerSysctls.empty())
			test::mustRun(peer->exec("sysctl -qw " + setup.peerSysctls));

		UniqueFd aNs = hostA->open();
		int hostFamily = family == Family::V4 ? AF_INET : AF_INET6;
		Result<UniqueFd> l = runInNetns(aNs.get(), [&]() -> Result<UniqueFd> {
			FERRY_TRY_ASSIGN(UniqueFd fd, makeSocket(hostFamily));
			if (setup.hostListener)
				setup.hostListener(fd.get());
			// Mapped: a dual-stack listener on :: accepts an IPv4 peer.
			Endpoint local = family == Family::Mapped ? endpoint("::", 0) : endpoint(hostAddress, 0);
			socklen_t len;
			sockaddr_storage ss = local.toSockaddr(len);
			if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0)
				return errnoError("bind");
			if (::listen(fd.get(), 16) < 0)
				return errnoError("listen");
			return fd;
		});
		REQUIRE_MESSAGE(l.ok(), l.error().message());
		listener = std::move(*l);
		sockaddr_storage bound{};
		socklen_t boundLength = sizeof(bound);
		REQUIRE(::getsockname(listener.get(), reinterpret_cast<sockaddr *>(&bound), &boundLength) == 0);
		uint16_t port = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&bound), boundLength)->port;

		UniqueFd peerNs = peer->open();
		Result<UniqueFd> c = runInNetns(peerNs.get(), [&]() -> Result<UniqueFd> {
			FERRY_TRY_ASSIGN(UniqueFd fd, makeSocket(v6 ? AF_INET6 : AF_INET));
			socklen_t len;
			sockaddr_storage ss = endpoint(hostAddress, port).toSockaddr(len);
			if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0)
				return errnoError("connect");
			return fd;
		});
		REQUIRE_MESSAGE(c.ok(), c.error().message());
		peerFd = std::move(*c);
		hostFd = UniqueFd(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
		REQUIRE(hostFd);
	}

	// Emulates the flow lock: no TCP on the host's wire, either way.
	// Crafted segments travel over lo and are not affected.
	void lock(const test::TestHost &host)
	{
		test::mustRun(host.exec("nft -f - <<'EOF'\n"
		                        "table inet ferrytest {\n"
		                        " chain in { type filter hook input priority -300; iifname \"eth0\" meta l4proto tcp drop; }\n"
		                        " chain out { type filter hook output priority -300; oifname \"eth0\" meta l4proto tcp drop; }\n"
		                        "}\nEOF"));
	}
	void lockOutput(const test::TestHost &host)
	{
		test::mustRun(host.exec("nft -f - <<'EOF'\n"
		                        "table inet ferrytest {\n"
		                        " chain out { type filter hook output priority -300; oifname \"eth0\" meta l4proto tcp drop; }\n"
		                        "}\nEOF"));
	}
	void lockInputToo(const test::TestHost &host)
	{
		test::mustRun(host.exec("nft add chain inet ferrytest in '{ type filter hook input priority -300; }'"));
		test::mustRun(host.exec("nft add rule inet ferrytest in iifname eth0 meta l4proto tcp drop"));
	}
	void unlock(const test::TestHost &host) { test::runCommand(host.exec("nft delete table inet ferrytest 2>/dev/null")); }

	Result<ConnectionSnapshot> snapshotHost()
	{
		UniqueFd ns = hostNow->open();
		int fd = hostFd.get();
		return runInNetns(ns.get(), [fd] { return snapshot(fd); });
	}

	// Snapshot, discard, image, restore, resume. Returns the snapshot.
	//
	// The locks follow socket_repair.h and what a migration does: the
	// source is locked before the snapshot, the destination before the
	// address comes up there, and both stay locked until resume() has
	// returned. A namespace that holds the address without the socket
	// or a lock answers the peer's next retransmission or loss probe
	// with a RST (no socket for the 4-tuple), the peer drops its end,
	// and the restored socket's first segment is reset in turn.
	ConnectionSnapshot migrate(Target target, bool alreadyLocked = false, Way way = Way::Plain)
	{
		if (!alreadyLocked)
			lock(*hostNow);
		Result<ConnectionSnapshot> snap = snapshotHost();
		REQUIRE_MESSAGE(snap.ok(), snap.error().message());
		REQUIRE(discard(std::move(hostFd)).ok());
		std::vector<ConnectionSnapshot> image = test::throughImage({*snap});
		REQUIRE(image.size() == 1);
		const ConnectionSnapshot &s = image[0];

		const test::TestHost *to = target == Target::SameHost ? hostA : hostB;
		if (to != hostNow)
			lock(*to);
		if (target == Target::OtherHost)
			moveAddress();
		UniqueFd ns = to->open();
		std::optional<FreshSocketDefaults> fresh;
		Result<UniqueFd> fd = runInNetns(ns.get(), [&]() -> Result<UniqueFd> {
			if (way == Way::Plain)
				return restore(s);
			FERRY_TRY_ASSIGN(fresh, probeFreshSocketDefaults());
			FERRY_TRY_ASSIGN(UniqueFd prepared, prepareRestoreSocket(s.family));
			return restore(std::move(prepared), s, &*fresh);
		});
		REQUIRE_MESSAGE(fd.ok(), fd.error().message());
		if (target == Target::OtherHostAddressLater)
			moveAddress();
		Status resumed = resume(fd->get(), s, fresh ? &*fresh : nullptr);
		unlock(*hostA);
		unlock(*hostB);
		REQUIRE_MESSAGE(resumed.ok(), resumed.error().message());
		hostFd = std::move(*fd);
		hostNow = to;
		return *snap;
	}

	// The address leaves A and comes up on B; the peer forgets A's MAC
	// (what the neighbour announce does in ferry).
	void moveAddress()
	{
		net.removeAddress(*hostA, serviceCidr);
		net.addAddress(*hostB, serviceCidr);
		test::mustRun("ip -n " + peer->netns + " neigh flush all");
	}

	// Everything written so far arrives, plus `more` new bytes, each way.
	void checkBothWays(size_t more = 256 * 1024)
	{
		checkDirection(peerFd.get(), toHost, hostFd.get(), atHost, more, "peer->host");
		checkDirection(hostFd.get(), toPeer, peerFd.get(), atPeer, more, "host->peer");
	}

	static void checkDirection(int from, StreamSource &source, int to, StreamVerifier &verifier, size_t more,
	                           const char *what)
	{
		std::string direction = what;
		CAPTURE(direction);
		uint64_t target = source.offset() + more;
		TransferResult w;
		std::thread writer([&] { w = test::writeStream(from, source, more, 20000); });
		TransferResult r = test::readStream(to, verifier, target - verifier.offset(), 20000);
		writer.join();
		CHECK_MESSAGE(w.bytes == more, w.describe());
		CHECK_MESSAGE(verifier.offset() == target, r.describe());
		CHECK_FALSE_MESSAGE(verifier.firstMismatch().has_value(), "first mismatch at offset ",
		                    verifier.firstMismatch().value_or(0));
	}

	// Reads the rest of a direction that was shut down: all bytes, then EOF.
	static void checkEndsWithEof(int to, StreamSource &source, StreamVerifier &verifier, const char *what)
	{
		std::string direction = what;
		CAPTURE(direction);
		TransferResult r = test::readToEnd(to, verifier, 10000);
		CHECK_MESSAGE(r.eof, r.describe());
		CHECK(verifier.offset() == source.offset());
		CHECK_FALSE(verifier.firstMismatch().has_value());
	}
};

const Target kTargets[] = {Target::SameHost, Target::OtherHost};

std::string targetName(Target t)
{
	return t == Target::SameHost ? "same host" : t == Target::OtherHost ? "other host" : "other host, address later";
}

} // namespace

TEST_CASE("idle connection, every family, restored here and elsewhere")
{
	for (Family family : {Family::V4, Family::V6, Family::Mapped}) {
		for (Target target : {Target::SameHost, Target::OtherHost, Target::OtherHostAddressLater}) {
			Way way = target == Target::SameHost ? Way::Plain : Way::PreparedWithDefaults;
			CAPTURE(familyName(family));
			CAPTURE(targetName(target));
			CAPTURE(wayName(way));
			Setup setup;
			setup.family = family;
			Connection c(setup);
			c.checkBothWays(4096);
			ConnectionSnapshot s = c.migrate(target, false, way);
			CHECK(stateName(s.state) == stateName(TcpState::Established));
			CHECK(s.family == (family == Family::V4 ? AF_INET : AF_INET6));
			CHECK(s.flow.local.isV4Mapped() == (family == Family::Mapped));
			CHECK(s.receiveQueue.empty());
			CHECK(s.sendUnacked.empty());
			CHECK(s.sendUnsent.empty());
			CHECK(s.window.has_value());
			CHECK(s.negotiated.timestamps);
			CHECK(s.negotiated.sackPermitted);
			CHECK(s.negotiated.windowScaling);
			c.checkBothWays();
		}
	}
}

TEST_CASE("data in flight both ways and an unread receive queue")
{
	for (Target target : kTargets) {
		CAPTURE(targetName(target));
		Connection c;
		// Writes race with the lock: some bytes are in queues, some on
		// the wire and dropped, to be retransmitted after the restore.
		REQUIRE(test::writeStream(c.peerFd.get(), c.toHost, 200000).bytes == 200000);
		REQUIRE(test::writeStream(c.hostFd.get(), c.toPeer, 200000).bytes == 200000);
		ConnectionSnapshot s = c.migrate(target);
		CHECK(s.receiveQueue.size() > 0);
		c.checkBothWays();
	}
}

TEST_CASE("unacked plus unsent send queue while the peer does not read")
{
	for (Target target : kTargets) {
		CAPTURE(targetName(target));
		Connection c;
		int small = 16384;
		REQUIRE(::setsockopt(c.peerFd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
		test::fillStream(c.hostFd.get(), c.toPeer, 8u << 20);
		// The peer's window closes: what is left is partly sent, partly not.
		REQUIRE(eventually([&] {
			int before = ioctlValue(c.hostFd.get(), SIOCOUTQNSD);
			std::this_thread::sleep_for(std::chrono::milliseconds(50));
			return before > 0 && before == ioctlValue(c.hostFd.get(), SIOCOUTQNSD);
		}));
		ConnectionSnapshot s = c.migrate(target);
		CHECK(s.sendUnacked.size() > 0);
		CHECK(s.sendUnsent.size() > 0);
		c.checkBothWays();
	}
}

TEST_CASE("16 MiB queues in each direction")
{
	constexpr size_t kBig = 16u << 20;
	Setup setup;
	setup.hostListener = [](int fd) {
		int big = 48 << 20;
		::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof(big));
		::setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big));
	};
	Connection c(setup);
	int big = 48 << 20;
	REQUIRE(::setsockopt(c.peerFd.get(), SOL_SOCKET, SO_SNDBUFFORCE, &big, sizeof(big)) == 0);
	// Peer -> host: the host does not read, 16 MiB pile up in its receive queue.
	REQUIRE(test::writeStream(c.peerFd.get(), c.toHost, kBig, 30000).bytes == kBig);
	REQUIRE(eventually([&] { return static_cast<size_t>(ioctlValue(c.hostFd.get(), SIOCINQ)) == kBig; }, 10000));
	// Host -> peer: the peer does not read, the rest waits in the host's send queue.
	REQUIRE(test::fillStream(c.hostFd.get(), c.toPeer, kBig).bytes == kBig);
	std::this_thread::sleep_for(std::chrono::milliseconds(200));
	ConnectionSnapshot s = c.migrate(Target::OtherHost);
	CHECK(s.receiveQueue.size() == kBig);
	CHECK(s.sendUnacked.size() + s.sendUnsent.size() >= 8u << 20);
	c.checkBothWays(1u << 20);
}

TEST_CASE("half-closed states continue their open direction and end with EOF")
{
	for (Target target : kTargets) {
		CAPTURE(targetName(target));

		SUBCASE("FIN_WAIT1, our FIN sent but not acknowledged")
		{
			Connection c;
			c.checkBothWays(1000);
			c.lock(*c.hostA);
			REQUIRE(::shutdown(c.hostFd.get(), SHUT_WR) == 0);
			REQUIRE(eventually([&] { return tcpState(c.hostFd.get()) == TCP_FIN_WAIT1; }));
			ConnectionSnapshot s = c.migrate(target, true);
			CHECK(stateName(s.state) == stateName(TcpState::FinWait1));
			Connection::checkEndsWithEof(c.peerFd.get(), c.toPeer, c.atPeer, "host->peer");
			Connection::checkDirection(c.peerFd.get(), c.toHost, c.hostFd.get(), c.atHost, 100000, "peer->host");
		}
		SUBCASE("FIN_WAIT1, our FIN behind unsent data")
		{
			Connection c;
			int small = 16384;
			REQUIRE(::setsockopt(c.peerFd.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)) == 0);
			test::fillStream(c.hostFd.get(), c.toPeer, 4u << 20);
			REQUIRE(::shutdown(c.hostFd.get(), SHUT_WR) == 0);
			std::this_thread::sleep_for(std::chrono::milliseconds(100));
			ConnectionSnapshot s = c.migrate(target);
			CHECK(stateName(s.state) == stateName(TcpState::FinWait1));
			CHECK(s.sendUnsent.size() > 0);
			Connection::checkEndsWithEof(c.peerFd.get(), c.toPeer, c.atPeer, "host->peer");
			Connection::checkDirection(c.peerFd.get(), c.toHost, c.hostFd.get(), c.atHost, 100000, "peer->host");
		}
		SUBCASE("FIN_WAIT2")
		{
			Connection c;
			REQUIRE(test::writeStream(c.hostFd.get(), c.toPeer, 5000).bytes == 5000);
			REQUIRE(::shutdown(c.hostFd.get(), SHUT_WR) == 0);
			REQUIRE(eventually([&] { return tcpState(c.hostFd.get()) == TCP_FIN_WAIT2; }));
			ConnectionSnapshot s = c.migrate(target);
			CHECK(stateName(s.state) == stateName(TcpState::FinWait2));
			CHECK(tcpState(c.hostFd.get()) == TCP_FIN_WAIT2);
			Connection::checkEndsWithEof(c.peerFd.get(), c.toPeer, c.atPeer, "host->peer");
			Connection::checkDirection(c.peerFd.get(), c.toHost, c.hostFd.get(), c.atHost, 100000, "peer->host");
			::shutdown(c.peerFd.get(), SHUT_WR);
			Connection::checkEndsWithEof(c.hostFd.get(), c.toHost, c.atHost, "peer->host");
		}
		SUBCASE("CLOSE_WAIT with unread bytes")
		{
			Connection c;
			REQUIRE(test::writeStream(c.peerFd.get(), c.toHost, 7000).bytes == 7000);
			REQUIRE(::shutdown(c.peerFd.get(), SHUT_WR) == 0);
			REQUIRE(eventually([&] { return tcpState(c.hostFd.get()) == TCP_CLOSE_WAIT; }));
			ConnectionSnapshot s = c.migrate(target);
			CHECK(stateName(s.state) == stateName(TcpState::CloseWait));
			CHECK(s.receiveQueue.size() == 7000);
			CHECK(tcpState(c.hostFd.get()) == TCP_CLOSE_WAIT);
			Connection::checkEndsWithEof(c.hostFd.get(), c.toHost, c.atHost, "peer->host");
			Connection::checkDirection(c.hostFd.get(), c.toPeer, c.peerFd.get(), c.atPeer, 100000, "host->peer");
			::shutdown(c.hostFd.get(), SHUT_WR);
			Connection::checkEndsWithEof(c.peerFd.get(), c.toPeer, c.atPeer, "host->peer");
		}
		SUBCASE("LAST_ACK")
		{
			Connection c;
			REQUIRE(test::writeStream(c.peerFd.get(), c.toHost, 3000).bytes == 3000);
			REQUIRE(::shutdown(c.peerFd.get(), SHUT_WR) == 0);
			REQUIRE(eventually([&] { return tcpState(c.hostFd.get()) == TCP_CLOSE_WAIT; }));
			REQUIRE(test::writeStream(c.hostFd.get(), c.toPeer, 3000).bytes == 3000);
			c.lock(*c.hostA);
			REQUIRE(::shutdown(c.hostFd.get(), SHUT_WR) == 0);
			REQUIRE(tcpState(c.hostFd.get()) == TCP_LAST_ACK);
			ConnectionSnapshot s = c.migrate(target, true);
			CHECK(stateName(s.state) == stateName(TcpState::LastAck));
			Connection::checkEndsWithEof(c.hostFd.get(), c.toHost, c.atHost, "peer->host");
			Connection::checkEndsWithEof(c.peerFd.get(), c.toPeer, c.atPeer, "host->peer");
		}
		SUBCASE("CLOSING")
		{
			Connection c;
			REQUIRE(test::writeStream(c.hostFd.get(), c.toPeer, 2000).bytes == 2000);
			// Our FIN (and data) do not leave; the peer's FIN still arrives.
			c.lockOutput(*c.hostA);
			REQUIRE(::shutdown(c.hostFd.get(), SHUT_WR) == 0);
			REQUIRE(test::writeStream(c.peerFd.get(), c.toHost, 2000).bytes == 2000);
			REQUIRE(::shutdown(c.peerFd.get(), SHUT_WR) == 0);
			REQUIRE(eventually([&] { return tcpState(c.hostFd.get()) == TCP_CLOSING; }));
			c.lockInputToo(*c.hostA);
			ConnectionSnapshot s = c.migrate(target, true);
			CHECK(stateName(s.state) == stateName(TcpState::Closing));
			Connection::checkEndsWithEof(c.hostFd.get(), c.toHost, c.atHost, "peer->host");
			Connection::checkEndsWithEof(c.peerFd.get(), c.toPeer, c.atPeer, "host->peer");
		}
	}
}

TEST_CASE("CLOSE with a peer: unread bytes, then EOF or the reset")
{
	SUBCASE("reset with unread bytes")
	{
		Connection c;
		REQUIRE(test::writeStream(c.peerFd.get(), c.toHost, 9000).bytes == 9000);
		REQUIRE(eventually([&] { return ioctlValue(c.hostFd.get(), SIOCINQ) == 9000; }));
		linger hard{1, 0};
		REQUIRE(::setsockopt(c.peerFd.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof(hard)) == 0);
		c.peerFd.reset(); // RST
		REQUIRE(eventually([&] { return tcpState(c.hostFd.get()) == TCP_CLOSE; }));
		ConnectionSnapshot s = c.migrate(Target::OtherHost);
		CHECK(stateName(s.state) == stateName(TcpState::Close));
		CHECK(s.socketError == ECONNRESET);
		CHECK(s.receiveQueue.size() == 9000);
		TransferResult r = test::readStream(c.hostFd.get(), c.atHost, 9000, 5000);
		CHECK(r.bytes == 9000);
		CHECK_FALSE(c.atHost.firstMismatch().has_value());
		char byte;
		CHECK(::recv(c.hostFd.get(), &byte, 1, MSG_DONTWAIT) == -1);
		CHECK(errno == ECONNRESET);
	}
	SUBCASE("fully closed with unread bytes")
	{
		Connection c;
		REQUIRE(test::writeStream(c.peerFd.get(), c.toHost, 4000).bytes == 4000);
		REQUIRE(::shutdown(c.peerFd.get(), SHUT_WR) == 0);
		REQUIRE(eventually([&] { return tcpState(c.hostFd.get()) == TCP_CLOSE_WAIT; }));
		REQUIRE(::shutdown(c.hostFd.get(), SHUT_WR) == 0);
		REQUIRE(eventually([&] { return tcpState(c.hostFd.get()) == TCP_CLOSE; }));
		ConnectionSnapshot s = c.migrate(Target::SameHost);
		CHECK(stateName(s.state) == stateName(TcpState::Close));
		CHECK(s.socketError == 0);
		Connection::checkEndsWithEof(c.hostFd.get(), c.toHost, c.atHost, "peer->host");
	}
}

TEST_CASE("peers without timestamps, SACK or window scaling")
{
	const char *sysctls[] = {"net.ipv4.tcp_timestamps=0", "net.ipv4.tcp_sack=0", "net.ipv4.tcp_window_scaling=0"};
	for (std::string sysctl : sysctls) {
		CAPTURE(sysctl);
		Setup setup;
		setup.peerSysctls = sysctl;
		Connection c(setup);
		REQUIRE(test::writeStream(c.peerFd.get(), c.toHost, 30000).bytes == 30000);
		ConnectionSnapshot s = c.migrate(Target::OtherHost);
		std::string which = sysctl;
		CHECK(s.negotiated.timestamps == (which.find("timestamps") == std::string::npos));
		CHECK(s.negotiated.sackPermitted == (which.find("sack") == std::string::npos));
		CHECK(s.negotiated.windowScaling == (which.find("window_scaling") == std::string::npos));
		c.checkBothWays();
	}
}

TEST_CASE("every user option is carried")
{
	for (auto [family, way] : {std::pair{Family::V4, Way::Plain}, std::pair{Family::V6, Way::Plain},
	                           std::pair{Family::V4, Way::PreparedWithDefaults},
	                           std::pair{Family::V6, Way::PreparedWithDefaults}}) {
		CAPTURE(familyName(family));
		CAPTURE(wayName(way));
		Setup setup;
		setup.family = family;
		Connection c(setup);
		int fd = c.hostFd.get();
		auto set = [fd](int level, int name, int value) {
			CHECK(::setsockopt(fd, level, name, &value, sizeof(value)) == 0);
		};
		set(SOL_TCP, TCP_NODELAY, 1);
		set(SOL_SOCKET, SO_KEEPALIVE, 1);
		set(SOL_TCP, TCP_KEEPIDLE, 33);
		set(SOL_TCP, TCP_KEEPINTVL, 7);
		set(SOL_TCP, TCP_KEEPCNT, 4);
		set(SOL_TCP, TCP_USER_TIMEOUT, 12345);
		set(SOL_TCP, TCP_NOTSENT_LOWAT, 65536);
		set(SOL_TCP, TCP_WINDOW_CLAMP, 300000);
		set(SOL_TCP, TCP_LINGER2, 17);
		set(SOL_SOCKET, SO_SNDBUF, 400000);
		set(SOL_SOCKET, SO_RCVBUF, 500000);
		set(SOL_SOCKET, SO_MARK, 0x77);
		// TOS before priority: IP_TOS also rewrites the priority.
		if (family == Family::V6)
			set(SOL_IPV6, IPV6_TCLASS, 0x20);
		else
			set(SOL_IP, IP_TOS, 0x20);
		set(SOL_SOCKET, SO_PRIORITY, 5);
		set(SOL_SOCKET, SO_OOBINLINE, 1);
		set(SOL_SOCKET, SO_REUSEADDR, 1);
		linger l{1, 9};
		CHECK(::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) == 0);
		const char cc[] = "reno";
		CHECK(::setsockopt(fd, SOL_TCP, TCP_CONGESTION, cc, sizeof(cc) - 1) == 0);

		ConnectionSnapshot s = c.migrate(Target::OtherHost, false, way);
		const UserOptions &o = s.options;
		CHECK(o.noDelay);
		CHECK(o.keepAlive);
		CHECK(o.keepIdle == 33);
		CHECK(o.keepInterval == 7);
		CHECK(o.keepCount == 4);
		CHECK(o.userTimeout == 12345);
		CHECK(o.notSentLowat == 65536);
		CHECK(o.linger2 == 17);
		CHECK(o.sendBufferLocked);
		CHECK(o.receiveBufferLocked);
		CHECK(o.sendBuffer == 800000);
		CHECK(o.receiveBuffer == 1000000);
		CHECK(o.mark == 0x77);
		CHECK(o.priority == 5);
		CHECK(o.tos == 0x20);
		CHECK(o.oobInline);
		CHECK(o.reuseAddress);
		CHECK(o.lingerOn);
		CHECK(o.lingerSeconds == 9);
		CHECK(o.congestion == "reno");

		// The restored socket reads back the same options: snapshot it
		// again (which also exercises release()).
		UniqueFd ns = c.hostNow->open();
		int restored = c.hostFd.get();
		Result<ConnectionSnapshot> again = runInNetns(ns.get(), [restored] { return snapshot(restored); });
		REQUIRE_MESSAGE(again.ok(), again.error().message());
		CHECK(again->options == s.options);
		REQUIRE(release(restored, *again).ok());
		c.checkBothWays();
	}
}

TEST_CASE("autotuned buffers stay autotuned")
{
	Connection c;
	ConnectionSnapshot s = c.migrate(Target::SameHost);
	CHECK_FALSE(s.options.sendBufferLocked);
	CHECK_FALSE(s.options.receiveBufferLocked);
	int locks = -1;
	socklen_t length = sizeof(locks);
	REQUIRE(::getsockopt(c.hostFd.get(), SOL_SOCKET, SO_BUF_LOCK, &locks, &length) == 0);
	CHECK(locks == 0);
	c.checkBothWays();
}

// The defaults skip an option only where the destination's fresh socket
// already has the source's value: B's sysctls differ from A's here, so the
// restored socket must be given A's values explicitly, and a connection
// with every option at A's defaults reads back exactly as it was.
TEST_CASE("fresh-socket defaults of another namespace do not leak into the restored socket")
{
	for (Way way : kWays) {
		CAPTURE(wayName(way));
		Connection c;
		test::mustRun(c.hostB->exec("sysctl -qw net.ipv4.tcp_keepalive_time=111 net.ipv4.tcp_keepalive_intvl=22 "
		                            "net.ipv4.tcp_keepalive_probes=3 net.ipv4.tcp_fin_timeout=19 "
		                            "net.ipv4.tcp_congestion_control=reno"));
		ConnectionSnapshot s = c.migrate(Target::OtherHost, false, way);
		CHECK(s.options.keepIdle != 111);
		CHECK(s.options.linger2 != 19);
		CHECK(s.options.congestion != "reno");
		UniqueFd ns = c.hostNow->open();
		int restored = c.hostFd.get();
		Result<ConnectionSnapshot> again = runInNetns(ns.get(), [restored] { return snapshot(restored); });
		REQUIRE_MESSAGE(again.ok(), again.error().message());
		CHECK(again->options == s.options);
		REQUIRE(release(restored, *again).ok());
		c.checkBothWays();
	}
}

TEST_CASE("a prepared socket takes connected states only, and says so")
{
	Connection c;
	UniqueFd ns = c.hostB->open();
	ConnectionSnapshot listener;
	listener.family = AF_INET;
	listener.state = TcpState::Listen;
	listener.bound = true;
	listener.flow.local = endpoint("198.51.100.3", 7000);
	Result<UniqueFd> fd = runInNetns(ns.get(), [&]() -> Result<UniqueFd> {
		FERRY_TRY_ASSIGN(UniqueFd prepared, prepareRestoreSocket(AF_INET));
		return restore(std::move(prepared), listener);
	});
	REQUIRE_FALSE(fd.ok());
	CHECK(fd.error().code == EINVAL);
	CHECK(fd.error().message().find("LISTEN") != std::string::npos);
	CHECK(prepareRestoreSocket(AF_UNIX).error().code == EINVAL);
}

TEST_CASE("release() rolls back: the original connection carries on")
{
	for (Family family : {Family::V4, Family::V6}) {
		CAPTURE(familyName(family));
		Setup setup;
		setup.family = family;
		Connection c(setup);
		REQUIRE(test::writeStream(c.peerFd.get(), c.toHost, 50000).bytes == 50000);
		c.lock(*c.hostA);
		Result<ConnectionSnapshot> s = c.snapshotHost();
		REQUIRE_MESSAGE(s.ok(), s.error().message());
		c.unlock(*c.hostA);
		REQUIRE(release(c.hostFd.get(), *s).ok());
		c.checkBothWays();
	}
}

TEST_CASE("a listener comes back with its backlog and accepts new connections")
{
	for (Target target : kTargets) {
		CAPTURE(targetName(target));
		Connection c;
		// Migrate the listener itself. Its child goes first, silently: a
		// listener cannot be bound again next to children that did not
		// set SO_REUSEADDR (restore listeners before their connections).
		REQUIRE(discard(std::move(c.hostFd)).ok());
		c.hostFd = std::move(c.listener);
		ConnectionSnapshot s = c.migrate(target);
		CHECK(stateName(s.state) == stateName(TcpState::Listen));
		CHECK(s.backlog == 16);
		CHECK(s.bound);
		UniqueFd peerNs = c.peer->open();
		uint16_t port = s.flow.local.port;
		std::string address = c.hostAddress;
		Result<UniqueFd> client = runInNetns(peerNs.get(), [&]() -> Result<UniqueFd> {
			FERRY_TRY_ASSIGN(UniqueFd fd, makeSocket(AF_INET));
			socklen_t len;
			sockaddr_storage ss = endpoint(address, port).toSockaddr(len);
			if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0)
				return errnoError("connect to the restored listener");
			return fd;
		});
		REQUIRE_MESSAGE(client.ok(), client.error().message());
		UniqueFd accepted(::accept4(c.hostFd.get(), nullptr, nullptr, SOCK_CLOEXEC));
		REQUIRE(accepted);
		StreamSource src(5);
		StreamVerifier ver(5);
		Connection::checkDirection(client->get(), src, accepted.get(), ver, 10000, "new connection");
	}
}

TEST_CASE("a bound, unconnected socket keeps its name")
{
	Connection c;
	UniqueFd aNs = c.hostA->open();
	std::string address = c.hostAddress;
	Result<UniqueFd> bound = runInNetns(aNs.get(), [&]() -> Result<UniqueFd> {
		FERRY_TRY_ASSIGN(UniqueFd fd, makeSocket(AF_INET));
		socklen_t len;
		sockaddr_storage ss = endpoint(address, 0).toSockaddr(len);
		if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0)
			return errnoError("bind");
		return fd;
	});
	REQUIRE(bound.ok());
	c.hostFd = std::move(*bound);
	ConnectionSnapshot s = c.migrate(Target::OtherHost);
	CHECK(s.bound);
	CHECK(stateName(s.state) == stateName(TcpState::Close));
	sockaddr_storage name{};
	socklen_t length = sizeof(name);
	REQUIRE(::getsockname(c.hostFd.get(), reinterpret_cast<sockaddr *>(&name), &length) == 0);
	CHECK(*Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&name), length) == s.flow.local);
}

TEST_CASE("states that cannot migrate are refused with the flow and the reason")
{
	SUBCASE("SYN_SENT")
	{
		Connection c;
		c.lock(*c.hostA); // the SYN never leaves
		UniqueFd aNs = c.hostA->open();
		std::string peer = c.peerAddress;
		Result<UniqueFd> fd = runInNetns(aNs.get(), [&]() -> Result<UniqueFd> {
			UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
			socklen_t len;
			sockaddr_storage ss = endpoint(peer, 9).toSockaddr(len);
			::connect(s.get(), reinterpret_cast<sockaddr *>(&ss), len);
			return s;
		});
		REQUIRE(fd.ok());
		int raw = fd->get();
		Result<ConnectionSnapshot> s = runInNetns(aNs.get(), [raw] { return snapshot(raw); });
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().what.find("SYN_SENT") != std::string::npos);
		CHECK(s.error().context.find("flow=198.51.100.2:") != std::string::npos);
		CHECK(s.error().context.find("198.51.100.1:9") != std::string::npos);
		CHECK(s.error().context.find("phase=") != std::string::npos);
		CHECK(s.error().context.find("netns=net:[") != std::string::npos);
	}
	SUBCASE("urgent data pending")
	{
		Connection c;
		char oob = '!';
		REQUIRE(::send(c.peerFd.get(), &oob, 1, MSG_OOB) == 1);
		REQUIRE(eventually([&] {
			char b;
			return ::recv(c.hostFd.get(), &b, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT) == 1;
		}));
		Result<ConnectionSnapshot> s = c.snapshotHost();
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().what.find("urgent") != std::string::npos);
		// Refused before repair mode: the connection is untouched.
		c.checkBothWays(1000);
	}
	SUBCASE("TCP-MD5")
	{
		Setup setup;
		setup.hostListener = [](int fd) {
			tcp_md5sig key{};
			auto *sin = reinterpret_cast<sockaddr_in *>(&key.tcpm_addr);
			sin->sin_family = AF_INET;
			::inet_pton(AF_INET, "198.51.100.1", &sin->sin_addr);
			key.tcpm_keylen = 6;
			std::memcpy(key.tcpm_key, "secret", 6);
			REQUIRE(::setsockopt(fd, SOL_TCP, TCP_MD5SIG, &key, sizeof(key)) == 0);
		};
		// Both ends need the key, or the handshake would not complete.
		Result<ConnectionSnapshot> s = makeError("not run");
		{
			test::TestNetwork net;
			test::TestHost peer = net.addHost("peer", {"198.51.100.1/24"});
			test::TestHost host = net.addHost("hostA", {"198.51.100.2/24"});
			UniqueFd hostNs = host.open();
			UniqueFd peerNs = peer.open();
			Result<UniqueFd> l = runInNetns(hostNs.get(), [&]() -> Result<UniqueFd> {
				FERRY_TRY_ASSIGN(UniqueFd fd, makeSocket(AF_INET));
				setup.hostListener(fd.get());
				socklen_t len;
				sockaddr_storage ss = endpoint("198.51.100.2", 0).toSockaddr(len);
				if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0 || ::listen(fd.get(), 4) < 0)
					return errnoError("listen");
				return fd;
			});
			REQUIRE(l.ok());
			sockaddr_storage b{};
			socklen_t bl = sizeof(b);
			::getsockname(l->get(), reinterpret_cast<sockaddr *>(&b), &bl);
			uint16_t port = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&b), bl)->port;
			Result<UniqueFd> client = runInNetns(peerNs.get(), [&]() -> Result<UniqueFd> {
				FERRY_TRY_ASSIGN(UniqueFd fd, makeSocket(AF_INET));
				tcp_md5sig key{};
				auto *sin = reinterpret_cast<sockaddr_in *>(&key.tcpm_addr);
				sin->sin_family = AF_INET;
				::inet_pton(AF_INET, "198.51.100.2", &sin->sin_addr);
				key.tcpm_keylen = 6;
				std::memcpy(key.tcpm_key, "secret", 6);
				if (::setsockopt(fd.get(), SOL_TCP, TCP_MD5SIG, &key, sizeof(key)) < 0)
					return errnoError("TCP_MD5SIG");
				socklen_t len;
				sockaddr_storage ss = endpoint("198.51.100.2", port).toSockaddr(len);
				if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0)
					return errnoError("connect");
				return fd;
			});
			REQUIRE_MESSAGE(client.ok(), client.error().message());
			UniqueFd accepted(::accept4(l->get(), nullptr, nullptr, SOCK_CLOEXEC));
			REQUIRE(accepted);
			int raw = accepted.get();
			s = runInNetns(hostNs.get(), [raw] { return snapshot(raw); });
		}
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().what.find("TCP-MD5") != std::string::npos);
		CHECK(s.error().context.find("flow=198.51.100.2:") != std::string::npos);
	}
	SUBCASE("a listener with connections waiting to be accepted")
	{
		Connection c; // the accepted one is gone; queue a second one
		UniqueFd peerNs = c.peer->open();
		sockaddr_storage b{};
		socklen_t bl = sizeof(b);
		::getsockname(c.listener.get(), reinterpret_cast<sockaddr *>(&b), &bl);
		uint16_t port = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&b), bl)->port;
		std::string address = c.hostAddress;
		Result<UniqueFd> second = runInNetns(peerNs.get(), [&]() -> Result<UniqueFd> {
			FERRY_TRY_ASSIGN(UniqueFd fd, makeSocket(AF_INET));
			socklen_t len;
			sockaddr_storage ss = endpoint(address, port).toSockaddr(len);
			if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0)
				return errnoError("connect");
			return fd;
		});
		REQUIRE(second.ok());
		UniqueFd aNs = c.hostA->open();
		int raw = c.listener.get();
		Result<ConnectionSnapshot> s = runInNetns(aNs.get(), [raw] { return snapshot(raw); });
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().what.find("accept queue") != std::string::npos);
	}
}

TEST_CASE("a restore that fails leaves nothing behind and says where")
{
	Connection c;
	ConnectionSnapshot s;
	{
		c.lock(*c.hostA);
		Result<ConnectionSnapshot> snap = c.snapshotHost();
		REQUIRE(snap.ok());
		s = *snap;
	}
	// Corrupt the window so that the kernel refuses it (max_window < snd_wnd).
	REQUIRE(s.window.has_value());
	s.window->maxWindow = 1;
	s.window->sndWnd = 1000;
	UniqueFd bNs = c.hostB->open();
	Result<UniqueFd> fd = runInNetns(bNs.get(), [&s] { return restore(s); });
	REQUIRE_FALSE(fd.ok());
	CHECK_MESSAGE(fd.error().context.find("phase=restore-window") != std::string::npos, fd.error().message());
	// The original is still there, in repair mode: release and carry on.
	c.unlock(*c.hostA);
	REQUIRE(release(c.hostFd.get(), s).ok());
	c.checkBothWays(1000);
}
