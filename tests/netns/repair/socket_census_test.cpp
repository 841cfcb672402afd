// SocketCensus (agent/repair/diag_lookup.h) against the real kernel: what
// it lists, and that snapshot() with a census reads the same as without
// one, falls back when the census is out of date, and still refuses
// TCP-MD5. Both ends of each connection live in one namespace of the
// test's own, over loopback.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/netns.h"
#include "repair/diag_lookup.h"
#include "repair/kernel_features.h"
#include "repair/socket_repair.h"
#include "test_network.h"

using namespace ferry;
using namespace ferry::repair;

namespace {

enum class Family { V4, V6, Mapped };

const char *familyName(Family f)
{
	return f == Family::V4 ? "ipv4" : f == Family::V6 ? "ipv6" : "ipv4-mapped";
}

struct Pair {
	UniqueFd listener;
	UniqueFd client;
	UniqueFd server; // the accepted end: the one snapshotted
};

// A connection over loopback in the current namespace. `setUp` runs on the
// listener, so the accepted socket inherits what it sets.
Pair connectPair(Family family, const std::function<void(int)> &setUp = {})
{
	Pair p;
	int listenFamily = family == Family::V4 ? AF_INET : AF_INET6;
	p.listener = UniqueFd(::socket(listenFamily, SOCK_STREAM | SOCK_CLOEXEC, 0));
	REQUIRE(p.listener);
	if (setUp)
		setUp(p.listener.get());
	sockaddr_storage ss{};
	socklen_t length;
	if (family == Family::V4) {
		auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		length = sizeof(sockaddr_in);
	} else {
		auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		sin6->sin6_family = AF_INET6;
		// Mapped: a dual-stack listener on :: accepts an IPv4 client.
		sin6->sin6_addr = family == Family::V6 ? in6addr_loopback : in6addr_any;
		length = sizeof(sockaddr_in6);
	}
	REQUIRE(::bind(p.listener.get(), reinterpret_cast<sockaddr *>(&ss), length) == 0);
	REQUIRE(::listen(p.listener.get(), 4) == 0);
	REQUIRE(::getsockname(p.listener.get(), reinterpret_cast<sockaddr *>(&ss), &length) == 0);
	uint16_t port = ntohs(family == Family::V4 ? reinterpret_cast<sockaddr_in *>(&ss)->sin_port
	                                           : reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);

	sockaddr_storage to{};
	socklen_t toLength;
	if (family == Family::V6) {
		auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&to);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		sin6->sin6_port = htons(port);
		toLength = sizeof(sockaddr_in6);
	} else {
		auto *sin = reinterpret_cast<sockaddr_in *>(&to);
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons(port);
		toLength = sizeof(sockaddr_in);
	}
	p.client = UniqueFd(::socket(family == Family::V6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	REQUIRE(p.client);
	if (setUp && family == Family::V4)
		setUp(p.client.get()); // MD5 needs the key on both ends
	REQUIRE(::connect(p.client.get(), reinterpret_cast<sockaddr *>(&to), toLength) == 0);
	p.server = UniqueFd(::accept4(p.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
	REQUIRE(p.server);
	return p;
}

FlowId flowOf(int fd)
{
	sockaddr_storage local{}, remote{};
	socklen_t localLength = sizeof(local), remoteLength = sizeof(remote);
	REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr *>(&local), &localLength) == 0);
	REQUIRE(::getpeername(fd, reinterpret_cast<sockaddr *>(&remote), &remoteLength) == 0);
	Result<Endpoint> l = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&local), localLength);
	Result<Endpoint> r = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&remote), remoteLength);
	REQUIRE(l.ok());
	REQUIRE(r.ok());
	return {*l, *r};
}

uint64_t cookieOf(int fd)
{
	uint64_t cookie = 0;
	socklen_t length = sizeof(cookie);
	REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length) == 0);
	return cookie;
}

void setInt(int fd, int level, int name, int value)
{
	REQUIRE(::setsockopt(fd, level, name, &value, sizeof(value)) == 0);
}

// Sends `bytes` one way and waits until the receiver holds them and the
// sender's queue is acknowledged: the connection is idle again.
void exchange(int from, int to, size_t bytes)
{
	std::vector<uint8_t> data(bytes);
	for (size_t i = 0; i < bytes; ++i)
		data[i] = static_cast<uint8_t>(i * 7 + 1);
	REQUIRE(::send(from, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes));
	std::vector<uint8_t> got(bytes);
	size_t done = 0;
	while (done < bytes) {
		ssize_t n = ::recv(to, got.data() + done, bytes - done, 0);
		REQUIRE(n > 0);
		done += static_cast<size_t>(n);
	}
	CHECK(got == data);
}

void waitQuiet(int fd)
{
	for (int i = 0; i < 400; ++i) {
		int outq = -1;
		REQUIRE(::ioctl(fd, SIOCOUTQ, &outq) == 0);
		if (outq == 0)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	// Let delayed ACKs and window updates of both ends go out.
	std::this_thread::sleep_for(std::chrono::milliseconds(250));
}

// The test's own namespace, entered by this thread for the test's length.
struct Namespace {
	test::TestNetwork net;
	test::TestHost host = net.addIsolatedHost("census");
	UniqueFd fd = host.open();
	ScopedNetns inside = enter(fd.get());

	static ScopedNetns enter(int netns)
	{
		Result<ScopedNetns> s = ScopedNetns::enter(netns);
		REQUIRE_MESSAGE(s.ok(), s.error().message());
		return std::move(*s);
	}
};

void checkSame(const ConnectionSnapshot &a, const ConnectionSnapshot &b)
{
	CHECK(a.family == b.family);
	CHECK(a.flow == b.flow);
	CHECK(static_cast<int>(a.state) == static_cast<int>(b.state));
	CHECK(a.sendSeq == b.sendSeq);
	CHECK(a.receiveSeq == b.receiveSeq);
	CHECK(a.receiveQueue == b.receiveQueue);
	CHECK(a.sendUnacked == b.sendUnacked);
	CHECK(a.sendUnsent == b.sendUnsent);
	CHECK(a.negotiated == b.negotiated);
	CHECK(a.options.congestion == b.options.congestion);
	CHECK(a.options.mark == b.options.mark);
	CHECK(a.options.tos == b.options.tos);
	CHECK(a.options.priority == b.options.priority);
	CHECK(a.options.sendBuffer == b.options.sendBuffer);
	CHECK(a.options.receiveBuffer == b.options.receiveBuffer);
	CHECK(a.options.v6Only == b.options.v6Only);
	CHECK(a.options == b.options);
}

} // namespace

TEST_CASE("snapshot() with a census reads what it reads without one")
{
	KernelFeatures features = probeKernelFeatures();
	for (Family family : {Family::V4, Family::V6, Family::Mapped}) {
		for (bool options : {false, true}) {
			CAPTURE(familyName(family));
			CAPTURE(options);
			Namespace ns;
			Pair p = connectPair(family);
			int fd = p.server.get();
			bool v6 = family == Family::V6;
			if (options) {
				setInt(fd, SOL_SOCKET, SO_MARK, 7);
				setInt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TCLASS : IP_TOS, 0x20);
				setInt(fd, SOL_SOCKET, SO_PRIORITY, 3); // after the TOS, which sets it too
				REQUIRE(::setsockopt(fd, SOL_TCP, TCP_CONGESTION, "reno", 4) == 0);
				setInt(fd, SOL_SOCKET, SO_SNDBUF, 96 * 1024);
				setInt(fd, SOL_TCP, TCP_NODELAY, 1);
				setInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1);
				setInt(fd, SOL_TCP, TCP_KEEPIDLE, 33);
			}
			exchange(p.client.get(), fd, 1000);
			exchange(fd, p.client.get(), 500);
			waitQuiet(fd);

			// Without a census first; release() leaves repair mode with a
			// window probe, whose answer must settle before the census.
			Result<ConnectionSnapshot> direct = snapshot(fd);
			REQUIRE_MESSAGE(direct.ok(), direct.error().message());
			REQUIRE(release(fd, *direct).ok());
			waitQuiet(fd);

			FlowId flow = flowOf(fd);
			CHECK(flow == direct->flow);
			Result<SocketCensus> byFlows = SocketCensus::take(std::span<const FlowId>(&flow, 1));
			REQUIRE_MESSAGE(byFlows.ok(), byFlows.error().message());
			CHECK(byFlows->size() == 1);
			Result<SocketCensus> byDump = SocketCensus::take();
			REQUIRE_MESSAGE(byDump.ok(), byDump.error().message());
			CHECK(byDump->size() == 2); // both ends are here

			const CensusEntry *entry = byFlows->find(cookieOf(fd));
			REQUIRE(entry != nullptr);
			CHECK(entry->flow == flow);
			CHECK(entry->family == (family == Family::V4 ? AF_INET : AF_INET6));
			CHECK(entry->state == TCP_ESTABLISHED);
			CHECK(entry->hasReceiveCounters);
			CHECK_FALSE(entry->md5);
			REQUIRE(entry->mark.has_value());
			CHECK(*entry->mark == (options ? 7u : 0u));
			REQUIRE(entry->memory.has_value());
			CHECK(entry->memory->receiveAllocated == 0);
			CHECK(entry->memory->sendQueued == 0);
			CHECK(std::string(entry->congestion.data()) == (options ? "reno" : direct->options.congestion));
			// A priority set by the user is not provable from CLASS_ID.
			CHECK(entry->priority.has_value() == !options);
			const CensusEntry *dumped = byDump->find(cookieOf(fd));
			REQUIRE(dumped != nullptr);
			CHECK(dumped->flow == entry->flow);
			CHECK(byDump->find(cookieOf(p.client.get())) != nullptr);
			CHECK(byDump->find(cookieOf(p.listener.get())) == nullptr); // listeners are not listed

			SnapshotOptions withCensus;
			withCensus.census = &*byFlows;
			withCensus.features = &features;
			Result<ConnectionSnapshot> fromCensus = snapshot(fd, withCensus);
			REQUIRE_MESSAGE(fromCensus.ok(), fromCensus.error().message());
			checkSame(*fromCensus, *direct);
			REQUIRE(release(fd, *fromCensus).ok());

			// Still one connection, in order, both ways.
			exchange(p.client.get(), fd, 300);
			exchange(fd, p.client.get(), 300);
		}
	}
}

TEST_CASE("a census taken before data arrived is not trusted for the queue")
{
	Namespace ns;
	Pair p = connectPair(Family::V4);
	int fd = p.server.get();
	exchange(p.client.get(), fd, 100);
	waitQuiet(fd);
	FlowId flow = flowOf(fd);
	Result<SocketCensus> census = SocketCensus::take(std::span<const FlowId>(&flow, 1));
	REQUIRE(census.ok());
	const CensusEntry *entry = census->find(cookieOf(fd));
	REQUIRE(entry != nullptr);
	REQUIRE(entry->memory.has_value());
	REQUIRE(entry->memory->receiveAllocated == 0); // the census saw an empty queue

	// Then 3000 bytes arrive, unread.
	std::vector<uint8_t> data(3000);
	for (size_t i = 0; i < data.size(); ++i)
		data[i] = static_cast<uint8_t>(i % 251);
	REQUIRE(::send(p.client.get(), data.data(), data.size(), MSG_NOSIGNAL) == 3000);
	for (int i = 0; i < 400; ++i) {
		int inq = 0;
		REQUIRE(::ioctl(fd, SIOCINQ, &inq) == 0);
		if (inq == 3000)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	waitQuiet(p.client.get());

	SnapshotOptions withCensus;
	withCensus.census = &*census;
	Result<ConnectionSnapshot> s = snapshot(fd, withCensus);
	REQUIRE_MESSAGE(s.ok(), s.error().message());
	CHECK(s->receiveQueue == data);
	REQUIRE(release(fd, *s).ok());
	std::vector<uint8_t> got(3000);
	size_t done = 0;
	while (done < got.size()) {
		ssize_t n = ::recv(fd, got.data() + done, got.size() - done, 0);
		REQUIRE(n > 0);
		done += static_cast<size_t>(n);
	}
	CHECK(got == data);
}

TEST_CASE("TCP-MD5 is refused through a census too")
{
	Namespace ns;
	auto withKey = [](int fd) {
		tcp_md5sig key{};
		auto *sin = reinterpret_cast<sockaddr_in *>(&key.tcpm_addr);
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		key.tcpm_keylen = 6;
		std::memcpy(key.tcpm_key, "secret", 6);
		REQUIRE(::setsockopt(fd, SOL_TCP, TCP_MD5SIG, &key, sizeof(key)) == 0);
	};
	Pair p = connectPair(Family::V4, withKey);
	FlowId flow = flowOf(p.server.get());
	for (bool dump : {false, true}) {
		CAPTURE(dump);
		Result<SocketCensus> census = dump ? SocketCensus::take() : SocketCensus::take(std::span<const FlowId>(&flow, 1));
		REQUIRE_MESSAGE(census.ok(), census.error().message());
		const CensusEntry *entry = census->find(cookieOf(p.server.get()));
		REQUIRE(entry != nullptr);
		CHECK(entry->md5);
		SnapshotOptions withCensus;
		withCensus.census = &*census;
		Result<ConnectionSnapshot> s = snapshot(p.server.get(), withCensus);
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().what.find("TCP-MD5") != std::string::npos);
		CHECK(s.error().context.find("flow=127.0.0.1:") != std::string::npos);
	}
	// Refused before repair mode: the connection carries on.
	exchange(p.client.get(), p.server.get(), 200);
}

TEST_CASE("a census of flows lists the flows that have a socket here")
{
	Namespace ns;
	Pair a = connectPair(Family::V4);
	Pair b = connectPair(Family::V6);
	std::vector<FlowId> flows{flowOf(a.server.get()), flowOf(b.server.get()), flowOf(a.server.get())};
	FlowId missing = flows[0];
	missing.remote.port = static_cast<uint16_t>(missing.remote.port == 1 ? 2 : 1);
	flows.push_back(missing);
	Result<SocketCensus> census = SocketCensus::take(flows);
	REQUIRE_MESSAGE(census.ok(), census.error().message());
	CHECK(census->size() == 2); // the duplicate is one socket, the missing one none
	CHECK(census->find(cookieOf(a.server.get())) != nullptr);
	CHECK(census->find(cookieOf(b.server.get())) != nullptr);
	CHECK(census->find(cookieOf(a.client.get())) == nullptr);

	// A socket the census does not list is read the direct way.
	SnapshotOptions withCensus;
	withCensus.census = &*census;
	Result<ConnectionSnapshot> s = snapshot(a.client.get(), withCensus);
	REQUIRE_MESSAGE(s.ok(), s.error().message());
	CHECK(s->flow == flowOf(a.client.get()));
	REQUIRE(release(a.client.get(), *s).ok());
	exchange(a.client.get(), a.server.get(), 100);
}
