// FlowLock against the real kernel: two namespaces on a bridge, real TCP
// connections, real nftables.
#include <doctest/doctest.h>

#include <netinet/ip.h>
#include <netinet/tcp.h>

#include <cstdlib>
#include <vector>

#include "connection_helpers.h"
#include "netlock/flow_lock.h"
#include "netlock/lock_sweep.h"

using namespace ferry;
using namespace ferry::netlock;
using namespace ferry::test::netlock;
using ferry::test::TestHost;

namespace {

// Long enough for several retransmissions on a bridge with microsecond
// RTTs; a lock that leaks lets the data through well within it.
constexpr int kQuietMs = 600;
// Retransmission backoff while locked can reach seconds; after unlock the
// next retransmission must get through within this.
constexpr int kResumeMs = 10000;

// Packets counted by the drop rules of one chain of the lock table.
uint64_t droppedIn(const std::string &listing, const std::string &chain)
{
	size_t start = listing.find("chain " + chain + " {");
	if (start == std::string::npos)
		return 0;
	size_t end = listing.find("\n\t}", start);
	uint64_t total = 0;
	size_t pos = start;
	while (true) {
		size_t line = listing.find('\n', pos);
		if (line == std::string::npos || line >= end)
			break;
		size_t next = listing.find('\n', line + 1);
		std::string text = listing.substr(line + 1, next - line - 1);
		size_t counter = text.find("counter packets ");
		if (counter != std::string::npos && text.find(" drop") != std::string::npos)
			total += std::strtoull(text.c_str() + counter + 16, nullptr, 10);
		pos = line + 1;
	}
	return total;
}

// A TCP segment with the flow's addresses and ports, sent from a raw socket
// in the locked host, carrying `marker` as payload. Its checksum is left 0
// and it has no ACK flag, so the peer's TCP discards it; only a raw socket
// sees it. Returns sendto's errno, 0 on success.
int sendCrafted(const TestHost &host, const FlowId &flow, uint32_t mark, const std::string &marker)
{
	Endpoint from = flow.local;
	from.port = 0;
	Endpoint to = flow.remote;
	to.port = 0; // raw sockets: the port field must not name another protocol
	UniqueFd ns = host.open();
	Result<int> sent = runInNetns(ns.get(), [&]() -> Result<int> {
		UniqueFd fd(::socket(from.family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP));
		if (!fd)
			return errnoError("raw socket");
		if (mark != 0 && ::setsockopt(fd.get(), SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
			return errnoError("SO_MARK");
		socklen_t len = 0;
		sockaddr_storage local = from.toSockaddr(len);
		if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&local), len) < 0)
			return errnoError("bind raw socket");
		std::string segment(sizeof(tcphdr), '\0');
		tcphdr th{};
		th.source = htons(flow.local.port);
		th.dest = htons(flow.remote.port);
		th.seq = htonl(0x5eed);
		th.doff = sizeof(tcphdr) / 4;
		th.window = htons(1024);
		std::memcpy(segment.data(), &th, sizeof(th));
		segment += marker;
		sockaddr_storage remote = to.toSockaddr(len);
		if (::sendto(fd.get(), segment.data(), segment.size(), 0, reinterpret_cast<sockaddr *>(&remote), len) < 0)
			return errno;
		return 0;
	});
	REQUIRE(sent.ok());
	return *sent;
}

// A raw TCP socket in the peer: it sees every TCP segment that arrives.
UniqueFd tcpCapture(const TestHost &peer, int family)
{
	UniqueFd ns = peer.open();
	Result<UniqueFd> fd = runInNetns(ns.get(), [&]() -> Result<UniqueFd> {
		UniqueFd s(::socket(family, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP));
		if (!s)
			return errnoError("raw capture socket");
		return s;
	});
	REQUIRE(fd.ok());
	return std::move(*fd);
}

bool captured(int fd, const std::string &marker, int timeoutMs)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
	while (true) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0)
			return false;
		pollfd pfd{fd, POLLIN, 0};
		if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0)
			return false;
		char buffer[65536];
		ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
		if (n > 0 && std::string(buffer, static_cast<size_t>(n)).find(marker) != std::string::npos)
			return true;
	}
}

} // namespace

TEST_CASE("drop both ways: a locked connection exchanges nothing, others do, and unlock resumes it")
{
	for (Variant variant : {Variant::V4, Variant::V6, Variant::V4Mapped}) {
		CAPTURE(variantName(variant));
		TwoHosts hosts;
		Connection locked = connectHosts(hosts, variant);
		Connection other = connectHosts(hosts, variant);
		exchange(locked, "before");

		FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
		std::vector<FlowId> flows{locked.flow};
		Status s = lock->lock(hosts.host.netns, "both-ways", flows, kMark);
		REQUIRE_MESSAGE(s.ok(), s.error().message());
		CHECK(lock->isLocked());
		CHECK(hasTable(hosts.host, "inet ferry_both-ways"));
		CHECK_FALSE(hasTable(hosts.peer, "inet ferry_both-ways")); // only the namespace asked for

		sendAll(locked.client.get(), "c:during");
		sendAll(locked.server.get(), "s:during");
		CHECK(receiveWithin(locked.server.get(), 8, kQuietMs).empty());
		CHECK(receiveWithin(locked.client.get(), 8, kQuietMs).empty());
		exchange(other, "unaffected", 2000);

		std::string listing = nft(hosts.host, "list table inet ferry_both-ways");
		CHECK(listing.find("comment \"ferry migration=both-ways created=") != std::string::npos);
		CHECK(listing.find("priority raw") != std::string::npos);
		CHECK(droppedIn(listing, "input") > 0);
		CHECK(droppedIn(listing, "output") > 0);

		s = lock->unlock();
		REQUIRE_MESSAGE(s.ok(), s.error().message());
		CHECK_FALSE(lock->isLocked());
		CHECK_FALSE(hasTable(hosts.host, "inet ferry_both-ways"));

		// What was held back arrives, once and in order, then more flows.
		CHECK(receiveWithin(locked.server.get(), 8, kResumeMs) == "c:during");
		CHECK(receiveWithin(locked.client.get(), 8, kResumeMs) == "s:during");
		exchange(locked, "after");
		CHECK(receiveWithin(locked.server.get(), 1, 200).empty());
		CHECK(receiveWithin(locked.client.get(), 1, 200).empty());
	}
}

TEST_CASE("drop inbound: the locked host still sends but receives nothing until unlock")
{
	for (Variant variant : {Variant::V4, Variant::V6}) {
		CAPTURE(variantName(variant));
		TwoHosts hosts;
		Connection locked = connectHosts(hosts, variant);

		FlowLockPtr lock = makeFlowLock(LockStrategy::DropInbound);
		CHECK(lock->strategy() == LockStrategy::DropInbound);
		std::vector<FlowId> flows{locked.flow};
		Status s = lock->lock(hosts.host.netns, "inbound", flows, kMark);
		REQUIRE_MESSAGE(s.ok(), s.error().message());
		std::string listing = nft(hosts.host, "list table inet ferry_inbound");
		CHECK(listing.find("chain input") != std::string::npos);
		CHECK(listing.find("chain output") == std::string::npos);

		sendAll(locked.client.get(), "c:out");
		sendAll(locked.server.get(), "s:in");
		CHECK(receiveWithin(locked.server.get(), 5, 3000) == "c:out");
		CHECK(receiveWithin(locked.client.get(), 4, kQuietMs).empty());

		s = lock->unlock();
		REQUIRE_MESSAGE(s.ok(), s.error().message());
		CHECK(receiveWithin(locked.client.get(), 4, kResumeMs) == "s:in");
		exchange(locked, "after");
	}
}

TEST_CASE("crafted packets with the mark pass the lock; the same packet without it does not")
{
	for (Variant variant : {Variant::V4, Variant::V6}) {
		CAPTURE(variantName(variant));
		TwoHosts hosts;
		Connection locked = connectHosts(hosts, variant);
		UniqueFd capture = tcpCapture(hosts.peer, locked.flow.local.family);

		FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
		std::vector<FlowId> flows{locked.flow};
		Status s = lock->lock(hosts.host.netns, "crafted", flows, kMark);
		REQUIRE_MESSAGE(s.ok(), s.error().message());

		int unmarked = sendCrafted(hosts.host, locked.flow, 0, "ferry-unmarked");
		CHECK(unmarked == EPERM); // netfilter dropped it on the way out
		CHECK_FALSE(captured(capture.get(), "ferry-unmarked", kQuietMs));
		int otherMark = sendCrafted(hosts.host, locked.flow, kMark + 1, "ferry-othermark");
		CHECK(otherMark == EPERM);
		CHECK_FALSE(captured(capture.get(), "ferry-othermark", kQuietMs));

		CHECK(sendCrafted(hosts.host, locked.flow, kMark, "ferry-marked") == 0);
		CHECK(captured(capture.get(), "ferry-marked", 2000));

		REQUIRE(lock->unlock().ok());
		exchange(locked, "after");
	}
}

TEST_CASE("lock and unlock leave other tables of the namespace as they were")
{
	TwoHosts hosts;
	test::mustRun(hosts.host.exec("nft add table inet keepme"));
	test::mustRun(hosts.host.exec("nft 'add chain inet keepme in { type filter hook input priority 0; }'"));
	test::mustRun(hosts.host.exec("nft add rule inet keepme in tcp dport 9 accept"));
	test::mustRun(hosts.host.exec("nft add table ip other"));
	std::string before = nft(hosts.host, "list ruleset");

	Connection locked = connectHosts(hosts, Variant::V4);
	FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
	std::vector<FlowId> flows{locked.flow};
	REQUIRE(lock->lock(hosts.host.netns, "neighbourly", flows, kMark).ok());
	std::string during = nft(hosts.host, "list table inet keepme") + nft(hosts.host, "list table ip other");
	CHECK(before.find(during) != std::string::npos);
	REQUIRE(lock->unlock().ok());
	CHECK(nft(hosts.host, "list ruleset") == before);
}

TEST_CASE("unlock after the table was removed behind the lock's back says so and leaves it unlocked")
{
	TwoHosts hosts;
	Connection locked = connectHosts(hosts, Variant::V6);
	FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
	std::vector<FlowId> flows{locked.flow};
	REQUIRE(lock->lock(hosts.host.netns, "gone", flows, kMark).ok());
	REQUIRE(removeLock(hosts.host.netns, "gone").ok());

	Status s = lock->unlock();
	REQUIRE_FALSE(s.ok());
	CHECK(s.error().code == ENOENT);
	CHECK(s.error().context.find("migration=gone") != std::string::npos);
	CHECK_FALSE(lock->isLocked());
	exchange(locked, "free");
}

TEST_CASE("unlock works after the namespace's name is gone")
{
	TwoHosts hosts;
	Connection locked = connectHosts(hosts, Variant::V4);
	FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
	std::vector<FlowId> flows{locked.flow};
	REQUIRE(lock->lock(hosts.host.netns, "nameless", flows, kMark).ok());
	sendAll(locked.server.get(), "s:held");
	CHECK(receiveWithin(locked.client.get(), 6, kQuietMs).empty());

	// The namespace lives on (its sockets hold it) but can no longer be
	// opened by name.
	test::mustRun("ip netns del " + hosts.host.netns);
	REQUIRE_FALSE(openNetns(hosts.host.netns).ok());

	Status s = lock->unlock();
	REQUIRE_MESSAGE(s.ok(), s.error().message());
	CHECK(receiveWithin(locked.client.get(), 6, kResumeMs) == "s:held");
}
