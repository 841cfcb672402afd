// Conntrack carry-over against the real kernel.
//
// The end-to-end case migrates a live TCP connection from A to B, where B
// runs the firewall `ct state established,related accept; drop` (on input
// and on output: with output open, B's own first packet would create an
// entry and the test would pass without carry-over). The restored socket is
// rebuilt with raw TCP_REPAIR from A's sequence numbers. Before the entry
// is carried, the flow's packets are dropped; after, they pass both ways,
// while a new unrelated connection to B is still refused.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <linux/netfilter/nf_conntrack_common.h>
#include <linux/netfilter/nf_conntrack_tcp.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "base/flow.h"
#include "base/netns.h"
#include "base/unique_fd.h"
#include "netlink/address_switch.h"
#include "netlink/conntrack.h"
#include "netlink/neighbour_announce.h"
#include "test_network.h"

using namespace ferry;
using ferry::netlink::ConntrackEntry;
using ferry::netlink::ConntrackTuple;
using ferry::netlink::ServiceAddress;

namespace {

constexpr uint8_t kTcpEstablished = 3; // TCP_CONNTRACK_ESTABLISHED

ServiceAddress cidr(const std::string &text)
{
	auto parsed = ServiceAddress::parse(text);
	REQUIRE_MESSAGE(parsed.ok(), text);
	return *parsed;
}

Endpoint endpoint(const std::string &text)
{
	auto parsed = Endpoint::parse(text);
	REQUIRE_MESSAGE(parsed.ok(), text);
	return *parsed;
}

Endpoint localOf(int fd)
{
	sockaddr_storage ss {};
	socklen_t len = sizeof(ss);
	REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	return *Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), len);
}

Endpoint remoteOf(int fd)
{
	sockaddr_storage ss {};
	socklen_t len = sizeof(ss);
	REQUIRE(::getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	return *Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), len);
}

UniqueFd listenOn(int netnsFd, const Endpoint &at)
{
	Result<UniqueFd> r = runInNetns(netnsFd, [&]() -> Result<UniqueFd> {
		UniqueFd fd(::socket(at.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
		socklen_t len = 0;
		sockaddr_storage ss = at.toSockaddr(len);
		if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0 || ::listen(fd.get(), 4) < 0)
			return errnoError("listen on " + at.toString());
		return fd;
	});
	REQUIRE_MESSAGE(r.ok(), r.error().message());
	return std::move(r).value();
}

// Starts a non-blocking connect from inside `netnsFd`.
UniqueFd connectFrom(int netnsFd, const Endpoint &to)
{
	Result<UniqueFd> r = runInNetns(netnsFd, [&]() -> Result<UniqueFd> {
		UniqueFd fd(::socket(to.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
		socklen_t len = 0;
		sockaddr_storage ss = to.toSockaddr(len);
		if (!fd)
			return errnoError("socket");
		if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0 && errno != EINPROGRESS)
			return errnoError("connect to " + to.toString());
		return fd;
	});
	REQUIRE_MESSAGE(r.ok(), r.error().message());
	return std::move(r).value();
}

bool waitFor(int fd, short events, int timeoutMs)
{
	pollfd p {fd, events, 0};
	return ::poll(&p, 1, timeoutMs) == 1 && (p.revents & events);
}

bool connected(int fd, int timeoutMs)
{
	if (!waitFor(fd, POLLOUT, timeoutMs))
		return false;
	int err = 0;
	socklen_t len = sizeof(err);
	::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
	return err == 0;
}

// Reads exactly `want` bytes, or fewer if nothing arrives within the timeout.
std::string receive(int fd, size_t want, int timeoutMs)
{
	std::string out;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
	while (out.size() < want) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0 || !waitFor(fd, POLLIN, static_cast<int>(left.count())))
			break;
		char buffer[256];
		ssize_t n = ::recv(fd, buffer, std::min(sizeof(buffer), want - out.size()), MSG_DONTWAIT);
		if (n <= 0)
			break;
		out.append(buffer, static_cast<size_t>(n));
	}
	return out;
}

void sendAll(int fd, const std::string &data)
{
	REQUIRE(::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size()));
}

// ------------------------------------------------------------ raw repair
// agent/repair is written concurrently; until it lands, the test moves the
// socket with the bare TCP_REPAIR calls (CRIU's order).

struct RepairedState {
	Endpoint local;
	Endpoint remote;
	uint32_t sendSeq = 0;
	uint32_t receiveSeq = 0;
	uint32_t mss = 0;
	bool timestamps = false;
	bool sack = false;
	bool windowScaling = false;
	uint8_t sendScale = 0;
	uint8_t receiveScale = 0;
	uint32_t timestamp = 0;
	tcp_repair_window window {};
};

void setInt(int fd, int level, int option, int value)
{
	INFO("setsockopt " << option << " errno " << errno);
	REQUIRE(::setsockopt(fd, level, option, &value, sizeof(value)) == 0);
}

uint32_t queueSeq(int fd, int queue)
{
	setInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue);
	uint32_t seq = 0;
	socklen_t len = sizeof(seq);
	REQUIRE(::getsockopt(fd, SOL_TCP, TCP_QUEUE_SEQ, &seq, &len) == 0);
	return seq;
}

// Puts the (quiet, empty-queued) socket into repair mode and reads it.
RepairedState freeze(int fd)
{
	RepairedState s;
	s.local = localOf(fd);
	s.remote = remoteOf(fd);
	setInt(fd, SOL_TCP, TCP_REPAIR, TCP_REPAIR_ON);
	s.sendSeq = queueSeq(fd, TCP_SEND_QUEUE);
	s.receiveSeq = queueSeq(fd, TCP_RECV_QUEUE);
	tcp_info info {};
	socklen_t len = sizeof(info);
	REQUIRE(::getsockopt(fd, SOL_TCP, TCP_INFO, &info, &len) == 0);
	REQUIRE(info.tcpi_unacked == 0); // the test drained both directions first
	s.timestamps = info.tcpi_options & TCPI_OPT_TIMESTAMPS;
	s.sack = info.tcpi_options & TCPI_OPT_SACK;
	s.windowScaling = info.tcpi_options & TCPI_OPT_WSCALE;
	s.sendScale = info.tcpi_snd_wscale;
	s.receiveScale = info.tcpi_rcv_wscale;
	int mss = 0;
	len = sizeof(mss);
	REQUIRE(::getsockopt(fd, SOL_TCP, TCP_MAXSEG, &mss, &len) == 0);
	s.mss = static_cast<uint32_t>(mss);
	len = sizeof(s.timestamp);
	REQUIRE(::getsockopt(fd, SOL_TCP, TCP_TIMESTAMP, &s.timestamp, &len) == 0);
	len = sizeof(s.window);
	REQUIRE(::getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &s.window, &len) == 0);
	return s;
}

// Rebuilds the connection inside `netnsFd` and leaves repair mode.
UniqueFd restore(int netnsFd, const RepairedState &s)
{
	Result<UniqueFd> r = runInNetns(netnsFd, [&]() -> Result<UniqueFd> {
		UniqueFd fd(::socket(s.local.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (!fd)
			return errnoError("socket");
		int on = TCP_REPAIR_ON;
		if (::setsockopt(fd.get(), SOL_TCP, TCP_REPAIR, &on, sizeof(on)) < 0)
			return errnoError("TCP_REPAIR");
		// Sequence numbers can only be set while the socket is CLOSED.
		for (auto [queue, seq] : {std::pair{int(TCP_SEND_QUEUE), s.sendSeq}, std::pair{int(TCP_RECV_QUEUE), s.receiveSeq}}) {
			if (::setsockopt(fd.get(), SOL_TCP, TCP_REPAIR_QUEUE, &queue, sizeof(queue)) < 0 ||
			    ::setsockopt(fd.get(), SOL_TCP, TCP_QUEUE_SEQ, &seq, sizeof(seq)) < 0)
				return errnoError("TCP_QUEUE_SEQ");
		}
		socklen_t len = 0;
		sockaddr_storage local = s.local.toSockaddr(len);
		if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&local), len) < 0)
			return errnoError("bind " + s.local.toString());
		sockaddr_storage remote = s.remote.toSockaddr(len);
		// In repair mode connect() sends nothing and goes straight to ESTABLISHED.
		if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&remote), len) < 0)
			return errnoError("repair connect");
		std::vector<tcp_repair_opt> options;
		options.push_back({TCPOPT_MAXSEG, s.mss});
		if (s.windowScaling)
			options.push_back({TCPOPT_WINDOW, uint32_t(s.sendScale) | (uint32_t(s.receiveScale) << 16)});
		if (s.sack)
			options.push_back({TCPOPT_SACK_PERMITTED, 0});
		if (s.timestamps)
			options.push_back({TCPOPT_TIMESTAMP, 0});
		if (::setsockopt(fd.get(), SOL_TCP, TCP_REPAIR_OPTIONS, options.data(),
			    static_cast<socklen_t>(options.size() * sizeof(tcp_repair_opt))) < 0)
			return errnoError("TCP_REPAIR_OPTIONS");
		if (s.timestamps && ::setsockopt(fd.get(), SOL_TCP, TCP_TIMESTAMP, &s.timestamp, sizeof(s.timestamp)) < 0)
			return errnoError("TCP_TIMESTAMP");
		if (::setsockopt(fd.get(), SOL_TCP, TCP_REPAIR_WINDOW, &s.window, sizeof(s.window)) < 0)
			return errnoError("TCP_REPAIR_WINDOW");
		int off = TCP_REPAIR_OFF;
		if (::setsockopt(fd.get(), SOL_TCP, TCP_REPAIR, &off, sizeof(off)) < 0)
			return errnoError("leaving repair mode");
		return fd;
	});
	REQUIRE_MESSAGE(r.ok(), r.error().message());
	return std::move(r).value();
}

// A table that makes the namespace track connections without filtering.
void trackConnections(const test::TestHost &host)
{
	test::mustRun(host.exec("nft 'add table inet ferrytest_track; "
		"add chain inet ferrytest_track input { type filter hook input priority 0; policy accept; }; "
		"add rule inet ferrytest_track input ct state established counter'"));
}

// The destination's firewall: only established flows pass, both ways.
// Neighbour discovery is let through, as any real IPv6 firewall must.
void establishedOnlyFirewall(const test::TestHost &host)
{
	for (const char *hook : {"input", "output"}) {
		test::mustRun(host.exec(std::string("nft 'add table inet ferrytest_fw; ") +
			"add chain inet ferrytest_fw " + hook + " { type filter hook " + hook + " priority 0; policy drop; }; " +
			"add rule inet ferrytest_fw " + hook + " icmpv6 type { nd-neighbor-solicit, nd-neighbor-advert } accept; " +
			"add rule inet ferrytest_fw " + hook + " ct state established,related accept'"));
	}
}

ConntrackEntry syntheticEntry(const std::string &client, const std::string &server)
{
	ConntrackEntry e;
	e.original = ConntrackTuple{endpoint(client), endpoint(server)};
	e.reply = ConntrackTuple{e.original.destination, e.original.source};
	e.status = IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED;
	e.timeoutSeconds = 3600;
	e.mark = 42;
	e.tcpState = kTcpEstablished;
	e.windowScaleOriginal = 7;
	e.windowScaleReply = 9;
	e.tcpFlagsOriginal = IP_CT_TCP_FLAG_WINDOW_SCALE | IP_CT_TCP_FLAG_SACK_PERM;
	e.tcpFlagsReply = IP_CT_TCP_FLAG_WINDOW_SCALE | IP_CT_TCP_FLAG_SACK_PERM;
	return e;
}

struct Family {
	std::string peer, a, b, service, prefix;
	std::string at(const std::string &address, uint16_t port) const
	{
		return (address.find(':') != std::string::npos ? "[" + address + "]" : address) + ":" + std::to_string(port);
	}
};

const Family kIPv4 {"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.10", "/24"};
const Family kIPv6 {"2001:db8::1", "2001:db8::2", "2001:db8::3", "2001:db8::10", "/64"};

void migrateThroughFirewall(const Family &f)
{
	test::TestNetwork net;
	const test::TestHost peer = net.addHost("peer", {f.peer + f.prefix});
	const test::TestHost a = net.addHost("hostA", {f.a + f.prefix, f.service + f.prefix});
	const test::TestHost b = net.addHost("hostB", {f.b + f.prefix});
	trackConnections(a);
	establishedOnlyFirewall(b);
	UniqueFd nsPeer = peer.open();
	UniqueFd nsA = a.open();
	UniqueFd nsB = b.open();
	ServiceAddress service = cidr(f.service + f.prefix);

	// A live connection peer -> A, both directions quiet and acknowledged.
	UniqueFd listener = listenOn(nsA.get(), endpoint(f.at(f.service, 0)));
	UniqueFd client = connectFrom(nsPeer.get(), localOf(listener.get()));
	REQUIRE(connected(client.get(), 2000));
	REQUIRE(waitFor(listener.get(), POLLIN, 2000));
	UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
	REQUIRE(server.isValid());
	sendAll(client.get(), "hello");
	REQUIRE(receive(server.get(), 5, 2000) == "hello");
	sendAll(server.get(), "world");
	REQUIRE(receive(client.get(), 5, 2000) == "world");
	std::this_thread::sleep_for(std::chrono::milliseconds(100)); // last ACKs

	FlowId flow{localOf(server.get()), remoteOf(server.get())};
	std::vector<FlowId> flows{flow};

	// Source side: freeze the socket and read its conntrack entry.
	RepairedState state = freeze(server.get());
	auto read = netlink::readConntrack(nsA.get(), flows);
	REQUIRE_MESSAGE(read.ok(), read.error().message());
	REQUIRE(read->size() == 1);
	REQUIRE((*read)[0].has_value());
	ConntrackEntry entry = *(*read)[0];
	CHECK(entry.original == ConntrackTuple{flow.remote, flow.local}); // the peer opened it
	CHECK(entry.reply == ConntrackTuple{flow.local, flow.remote});
	CHECK(entry.tcpState == kTcpEstablished);
	CHECK((entry.status & (IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED)) == (IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED));
	CHECK(entry.timeoutSeconds > 0);
	CHECK_FALSE(entry.natted());

	// Namespaces that track nothing report "no entry", quietly.
	auto none = netlink::readConntrack(nsPeer.get(), flows);
	REQUIRE_MESSAGE(none.ok(), none.error().message());
	CHECK_FALSE((*none)[0].has_value());
	auto notYet = netlink::readConntrack(nsB.get(), flows);
	REQUIRE(notYet.ok());
	CHECK_FALSE((*notYet)[0].has_value());

	// The address moves and the peer is told.
	REQUIRE(netlink::removeAddress(nsA.get(), "eth0", service).ok());
	REQUIRE(netlink::addAddress(nsB.get(), "eth0", service).ok());
	netlink::AnnounceOptions once;
	once.count = 1;
	REQUIRE(netlink::announceAddress(nsB.get(), "eth0", service, once).ok());

	// Restore the socket on B, without its conntrack entry first: the
	// firewall drops the flow in both directions (the control).
	UniqueFd restored = restore(nsB.get(), state);
	sendAll(client.get(), "ping1");
	sendAll(restored.get(), "pong1");
	CHECK(receive(restored.get(), 5, 800).empty());
	CHECK(receive(client.get(), 5, 200).empty());

	// Carry the entry: now the migrated flow passes both ways. The data
	// sent above arrives by retransmission, in order, exactly once.
	Status created = netlink::restoreConntrack(nsB.get(), std::vector<ConntrackEntry>{entry});
	REQUIRE_MESSAGE(created.ok(), created.error().message());
	auto onB = netlink::readConntrack(nsB.get(), flows);
	REQUIRE(onB.ok());
	REQUIRE((*onB)[0].has_value());
	CHECK((*onB)[0]->original == entry.original);
	CHECK((*onB)[0]->tcpState == kTcpEstablished);

	CHECK(receive(restored.get(), 5, 5000) == "ping1");
	CHECK(receive(client.get(), 5, 5000) == "pong1");
	sendAll(client.get(), "ping2");
	CHECK(receive(restored.get(), 5, 2000) == "ping2");
	sendAll(restored.get(), "pong2");
	CHECK(receive(client.get(), 5, 2000) == "pong2");

	// A new, unrelated connection to B is still dropped by the firewall.
	UniqueFd other = listenOn(nsB.get(), endpoint(f.at(f.service, 0)));
	UniqueFd stranger = connectFrom(nsPeer.get(), localOf(other.get()));
	CHECK_FALSE(connected(stranger.get(), 1000));
	CHECK_FALSE(waitFor(other.get(), POLLIN, 0));

	// The source's socket goes away silently (repair mode: no FIN, no RST).
	server.reset();
	sendAll(client.get(), "ping3");
	CHECK(receive(restored.get(), 5, 2000) == "ping3");
}

} // namespace

TEST_CASE("a migrated IPv4 flow passes an established-only firewall once its entry is carried")
{
	migrateThroughFirewall(kIPv4);
}

TEST_CASE("a migrated IPv6 flow passes an established-only firewall once its entry is carried")
{
	migrateThroughFirewall(kIPv6);
}

TEST_CASE("entries round-trip through restore and read, and are removed on rollback")
{
	test::TestNetwork net;
	const test::TestHost d = net.addIsolatedHost("dest");
	UniqueFd ns = d.open();

	std::vector<ConntrackEntry> entries{
		syntheticEntry("198.51.100.1:40000", "198.51.100.10:8080"),
		syntheticEntry("[2001:db8::1]:40001", "[2001:db8::10]:8080"),
	};
	Status created = netlink::restoreConntrack(ns.get(), entries);
	REQUIRE_MESSAGE(created.ok(), created.error().message());

	// Read back by the service's view of the flows (local = server side).
	std::vector<FlowId> flows{
		FlowId{entries[0].original.destination, entries[0].original.source},
		FlowId{entries[1].original.destination, entries[1].original.source},
		FlowId{endpoint("198.51.100.10:8080"), endpoint("198.51.100.1:40999")}, // never created
	};
	auto read = netlink::readConntrack(ns.get(), flows);
	REQUIRE_MESSAGE(read.ok(), read.error().message());
	REQUIRE(read->size() == 3);
	for (size_t i = 0; i < 2; ++i) {
		CAPTURE(i);
		REQUIRE((*read)[i].has_value());
		const ConntrackEntry &got = *(*read)[i];
		CHECK(got.original == entries[i].original);
		CHECK(got.reply == entries[i].reply);
		CHECK(got.tcpState == kTcpEstablished);
		CHECK(got.mark == 42);
		CHECK(got.windowScaleOriginal == 7);
		CHECK(got.windowScaleReply == 9);
		CHECK((got.tcpFlagsOriginal & IP_CT_TCP_FLAG_SACK_PERM) != 0);
		CHECK((got.status & (IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED)) == (IPS_SEEN_REPLY | IPS_ASSURED | IPS_CONFIRMED));
		CHECK(got.timeoutSeconds > 3500);
		CHECK(got.timeoutSeconds <= 3600);
	}
	CHECK_FALSE((*read)[2].has_value());

	// Restoring again (the entry already exists) updates instead of failing.
	entries[0].mark = 43;
	Status again = netlink::restoreConntrack(ns.get(), entries);
	REQUIRE_MESSAGE(again.ok(), again.error().message());
	auto reread = netlink::readConntrack(ns.get(), flows);
	REQUIRE(reread.ok());
	CHECK((*reread)[0]->mark == 43);

	// Rollback removes them; removing twice is fine.
	REQUIRE(netlink::removeConntrack(ns.get(), entries).ok());
	REQUIRE(netlink::removeConntrack(ns.get(), entries).ok());
	auto gone = netlink::readConntrack(ns.get(), flows);
	REQUIRE(gone.ok());
	for (const auto &slot : *gone)
		CHECK_FALSE(slot.has_value());
}

TEST_CASE("a thousand entries are read and carried well within a blackout")
{
	test::TestNetwork net;
	const test::TestHost d = net.addIsolatedHost("dest");
	UniqueFd ns = d.open();
	constexpr int kEntries = 1000;
	std::vector<ConntrackEntry> entries;
	std::vector<FlowId> flows;
	for (int i = 0; i < kEntries; ++i) {
		bool v6 = i % 2;
		std::string client = v6 ? "[2001:db8::1]:" : "198.51.100.1:";
		std::string server = v6 ? "[2001:db8::10]:8080" : "198.51.100.10:8080";
		entries.push_back(syntheticEntry(client + std::to_string(20000 + i), server));
		flows.push_back(FlowId{entries.back().original.destination, entries.back().original.source});
	}
	auto start = std::chrono::steady_clock::now();
	Status created = netlink::restoreConntrack(ns.get(), entries);
	auto restored = std::chrono::steady_clock::now();
	auto read = netlink::readConntrack(ns.get(), flows);
	auto done = std::chrono::steady_clock::now();
	REQUIRE_MESSAGE(created.ok(), created.error().message());
	REQUIRE(read.ok());
	size_t found = 0;
	for (const auto &slot : *read)
		found += slot.has_value();
	CHECK(found == kEntries);
	auto ms = [](auto span) { return std::chrono::duration_cast<std::chrono::microseconds>(span).count() / 1000.0; };
	MESSAGE("conntrack: restore " << kEntries << " entries " << ms(restored - start) << " ms, read " << ms(done - restored) << " ms");
	CHECK(done - start < std::chrono::seconds(1));
	REQUIRE(netlink::removeConntrack(ns.get(), entries).ok());
}

TEST_CASE("NATed entries are refused with a clear error, and nothing is created")
{
	test::TestNetwork net;
	const test::TestHost d = net.addIsolatedHost("dest");
	UniqueFd ns = d.open();

	ConntrackEntry natted = syntheticEntry("198.51.100.1:40000", "198.51.100.10:8080");
	natted.reply.source = endpoint("203.0.113.10:80"); // DNAT'ed to a backend
	natted.status |= IPS_DST_NAT;
	Status s = netlink::restoreConntrack(ns.get(), std::vector<ConntrackEntry>{natted});
	REQUIRE_FALSE(s.ok());
	CHECK(s.error().code == EOPNOTSUPP);
	CHECK(s.error().message().find("NAT") != std::string::npos);
	CHECK(s.error().message().find("198.51.100.1:40000->198.51.100.10:8080") != std::string::npos);
	CHECK(s.error().message().find("netns=" + netlink::netnsLabel(ns.get())) != std::string::npos);

	FlowId flow{natted.original.destination, natted.original.source};
	auto read = netlink::readConntrack(ns.get(), std::vector<FlowId>{flow});
	REQUIRE(read.ok());
	CHECK_FALSE((*read)[0].has_value());
}

TEST_CASE("dual-stack flows are looked up as the IPv4 they are on the wire")
{
	FlowId mapped{endpoint("[::ffff:198.51.100.10]:8080"), endpoint("[::ffff:198.51.100.1]:40000")};
	ConntrackTuple t = netlink::inboundTuple(mapped);
	CHECK(t.source == endpoint("198.51.100.1:40000"));
	CHECK(t.destination == endpoint("198.51.100.10:8080"));
}
