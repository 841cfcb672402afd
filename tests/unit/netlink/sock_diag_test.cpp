// Discovery's pure parts: prefixes, state sets, the user-space filter and
// the decoder of SOCK_DIAG_BY_FAMILY answers (fed synthetic messages laid
// out as the kernel lays them out).
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/inet_diag.h>
#include <linux/sock_diag.h>
#include <linux/tcp.h>

#include <cstring>
#include <vector>

#include "netlink/sock_diag.h"

using namespace ferry;
using namespace ferry::netlink;

namespace {

Endpoint ep(const char *text)
{
	Result<Endpoint> e = Endpoint::parse(text);
	REQUIRE_MESSAGE(e.ok(), text);
	return *e;
}

CidrPrefix prefix(const char *text)
{
	Result<CidrPrefix> p = CidrPrefix::parse(text);
	REQUIRE_MESSAGE(p.ok(), text);
	return *p;
}

// One SOCK_DIAG_BY_FAMILY answer, built the way inet_diag fills it.
struct DiagMessage {
	alignas(nlmsghdr) char buffer[1024] = {};
	nlmsghdr *header;
	inet_diag_msg *msg;

	explicit DiagMessage(uint8_t family)
	{
		header = mnl_nlmsg_put_header(buffer);
		header->nlmsg_type = SOCK_DIAG_BY_FAMILY;
		msg = static_cast<inet_diag_msg *>(mnl_nlmsg_put_extra_header(header, sizeof(inet_diag_msg)));
		msg->idiag_family = family;
	}
	void addTcpInfo(uint32_t notSent, size_t length = sizeof(tcp_info))
	{
		tcp_info info{};
		info.tcpi_notsent_bytes = notSent;
		mnl_attr_put(header, INET_DIAG_INFO, length, &info);
	}
};

} // namespace

TEST_CASE("CidrPrefix parses IPv4 and IPv6 prefixes and bare addresses")
{
	CidrPrefix v4 = prefix("198.51.100.64/26");
	CHECK(v4.family == AF_INET);
	CHECK(v4.length == 26);
	CHECK(v4.toString() == "198.51.100.64/26");
	CHECK(prefix("2001:db8::/32").toString() == "2001:db8::/32");
	CHECK(prefix("203.0.113.9").length == 32);
	CHECK(prefix("2001:db8::1").length == 128);
	CHECK(prefix("0.0.0.0/0").length == 0);
	// Host bits are cleared, so equal prefixes compare equal.
	CHECK(prefix("198.51.100.77/24") == prefix("198.51.100.0/24"));
	CHECK(prefix("2001:db8::8123/113").toString() == "2001:db8::8000/113");

	for (const char *bad : {"198.51.100.0/33", "2001:db8::/129", "198.51.100.0/", "198.51.100.0/x",
				"198.51.100.0/-1", "198.51.100/24", "nonsense", "", "/24", "2001:db8::/3 2"}) {
		CAPTURE(bad);
		Result<CidrPrefix> p = CidrPrefix::parse(bad);
		REQUIRE_FALSE(p.ok());
		CHECK(p.error().code == EINVAL);
		CHECK(p.error().what.find(bad) != std::string::npos);
	}
}

TEST_CASE("CidrPrefix::contains checks the bits at the boundary, and v4 prefixes match v4-mapped addresses")
{
	CidrPrefix v4 = prefix("198.51.100.64/26");
	CHECK_FALSE(v4.contains(ep("198.51.100.63:1")));
	CHECK(v4.contains(ep("198.51.100.64:1")));
	CHECK(v4.contains(ep("198.51.100.127:1")));
	CHECK_FALSE(v4.contains(ep("198.51.100.128:1")));
	CHECK_FALSE(v4.contains(ep("203.0.113.64:1")));
	CHECK(v4.contains(ep("[::ffff:198.51.100.65]:1")));
	CHECK_FALSE(v4.contains(ep("[::ffff:198.51.100.1]:1")));
	CHECK_FALSE(v4.contains(ep("[2001:db8::c633:6441]:1"))); // same low bits, not mapped
	CHECK(prefix("0.0.0.0/0").contains(ep("203.0.113.1:1")));
	CHECK_FALSE(prefix("0.0.0.0/0").contains(ep("[2001:db8::1]:1")));

	CidrPrefix v6 = prefix("2001:db8::8000/113");
	CHECK(v6.contains(ep("[2001:db8::8000]:1")));
	CHECK(v6.contains(ep("[2001:db8::ffff]:1")));
	CHECK_FALSE(v6.contains(ep("[2001:db8::7fff]:1")));
	CHECK_FALSE(v6.contains(ep("[2001:db8:0:1::8000]:1")));
	CHECK_FALSE(v6.contains(ep("198.51.100.1:1")));
	CHECK(prefix("2001:db8::2").contains(ep("[2001:db8::2]:9")));
	CHECK_FALSE(prefix("2001:db8::2").contains(ep("[2001:db8::3]:9")));
	Endpoint none;
	CHECK_FALSE(v4.contains(none));
}

TEST_CASE("TcpStateSet uses the kernel's idiag_states bit layout")
{
	CHECK(TcpStateSet{}.empty());
	CHECK(TcpStateSet{TcpSocketState::Listen}.kernelMask() == (1u << 10));
	CHECK(TcpStateSet{TcpSocketState::Established, TcpSocketState::CloseWait}.kernelMask() == ((1u << 1) | (1u << 8)));
	TcpStateSet all = TcpStateSet::all();
	for (unsigned s = 1; s <= 12; ++s)
		CHECK(all.contains(static_cast<TcpSocketState>(s)));
	CHECK_FALSE(all.contains(static_cast<TcpSocketState>(0)));
	CHECK_FALSE(all.contains(static_cast<TcpSocketState>(13)));
	TcpStateSet some;
	some.add(TcpSocketState::FinWait1).add(TcpSocketState::FinWait2);
	CHECK(some.contains(TcpSocketState::FinWait2));
	CHECK_FALSE(some.contains(TcpSocketState::Established));
	CHECK(std::string(tcpStateName(TcpSocketState::CloseWait)) == "CLOSE_WAIT");
	CHECK(std::string(tcpStateName(TcpSocketState::FinWait1)) == "FIN_WAIT1");
	CHECK(std::string(tcpStateName(static_cast<TcpSocketState>(42))) == "UNKNOWN");
}

TEST_CASE("SocketFilter::matches ANDs family, states, ports and prefixes; each list ORs its entries")
{
	TcpSocketInfo s;
	s.flow = FlowId{ep("198.51.100.1:8080"), ep("203.0.113.5:40000")};
	s.state = TcpSocketState::Established;

	SocketFilter any;
	CHECK(any.matches(s));

	SocketFilter f;
	f.family = AF_INET6;
	CHECK_FALSE(f.matches(s));
	f.family = AF_INET;
	CHECK(f.matches(s));

	f.states = {TcpSocketState::Listen};
	CHECK_FALSE(f.matches(s));
	f.states.add(TcpSocketState::Established);
	CHECK(f.matches(s));

	f.localPorts = {80, 443};
	CHECK_FALSE(f.matches(s));
	f.localPorts.push_back(8080);
	CHECK(f.matches(s));

	f.remotePrefixes = {prefix("198.51.100.0/24")};
	CHECK_FALSE(f.matches(s)); // the local address is in it, the remote is not
	f.remotePrefixes.push_back(prefix("203.0.113.0/29"));
	CHECK(f.matches(s));

	// The remote port is not a local port.
	SocketFilter byRemotePort;
	byRemotePort.localPorts = {40000};
	CHECK_FALSE(byRemotePort.matches(s));
}

TEST_CASE("decodeInetDiag decodes an IPv4 answer: byte order, cookie halves, queues, inode")
{
	DiagMessage m(AF_INET);
	m.msg->idiag_state = 8; // CLOSE_WAIT
	m.msg->id.idiag_sport = htons(8080);
	m.msg->id.idiag_dport = htons(40000);
	REQUIRE(::inet_pton(AF_INET, "198.51.100.1", &m.msg->id.idiag_src[0]) == 1);
	REQUIRE(::inet_pton(AF_INET, "203.0.113.5", &m.msg->id.idiag_dst[0]) == 1);
	m.msg->id.idiag_cookie[0] = 0x89abcdefu;
	m.msg->id.idiag_cookie[1] = 0x01234567u;
	m.msg->id.idiag_if = 3;
	m.msg->idiag_rqueue = 3000;
	m.msg->idiag_wqueue = 3500;
	m.msg->idiag_uid = 1000;
	m.msg->idiag_inode = 424242;

	Result<TcpSocketInfo> info = detail::decodeInetDiag(m.header);
	REQUIRE_MESSAGE(info.ok(), info.error().message());
	CHECK(info->flow.local == ep("198.51.100.1:8080"));
	CHECK(info->flow.remote == ep("203.0.113.5:40000"));
	CHECK(info->state == TcpSocketState::CloseWait);
	CHECK(info->cookie == 0x0123456789abcdefull);
	CHECK(info->receiveQueue == 3000);
	CHECK(info->sendQueue == 3500);
	CHECK(info->uid == 1000);
	CHECK(info->inode == 424242);
	CHECK(info->interface == 3);
	CHECK(info->flow.local.scopeId == 0); // scopes are for IPv6 link-local only
	CHECK_FALSE(info->notSentBytes.has_value());
}

TEST_CASE("decodeInetDiag decodes IPv6, link-local scopes and tcp_info")
{
	DiagMessage m(AF_INET6);
	m.msg->idiag_state = 1;
	m.msg->id.idiag_sport = htons(443);
	m.msg->id.idiag_dport = htons(50000);
	REQUIRE(::inet_pton(AF_INET6, "fe80::1", m.msg->id.idiag_src) == 1);
	REQUIRE(::inet_pton(AF_INET6, "fe80::2", m.msg->id.idiag_dst) == 1);
	m.msg->id.idiag_if = 7;
	m.addTcpInfo(1500);

	Result<TcpSocketInfo> info = detail::decodeInetDiag(m.header);
	REQUIRE_MESSAGE(info.ok(), info.error().message());
	CHECK(info->flow.local.toString() == "[fe80::1]:443");
	CHECK(info->flow.remote.toString() == "[fe80::2]:50000");
	CHECK(info->flow.local.scopeId == 7);
	CHECK(info->flow.remote.scopeId == 7);
	REQUIRE(info->notSentBytes.has_value());
	CHECK(*info->notSentBytes == 1500);

	// A global address carries no scope.
	DiagMessage g(AF_INET6);
	REQUIRE(::inet_pton(AF_INET6, "2001:db8::1", g.msg->id.idiag_src) == 1);
	g.msg->id.idiag_if = 7;
	CHECK(detail::decodeInetDiag(g.header)->flow.local.scopeId == 0);
}

TEST_CASE("decodeInetDiag ignores a tcp_info too short to hold tcpi_notsent_bytes")
{
	DiagMessage m(AF_INET);
	m.addTcpInfo(99, offsetof(tcp_info, tcpi_notsent_bytes));
	Result<TcpSocketInfo> info = detail::decodeInetDiag(m.header);
	REQUIRE(info.ok());
	CHECK_FALSE(info->notSentBytes.has_value());
}

TEST_CASE("decodeInetDiag rejects truncated and foreign messages")
{
	DiagMessage shortOne(AF_INET);
	shortOne.header->nlmsg_len = NLMSG_LENGTH(sizeof(inet_diag_msg) - 1);
	Result<TcpSocketInfo> r = detail::decodeInetDiag(shortOne.header);
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == EPROTO);

	DiagMessage unixMessage(AF_UNIX);
	r = detail::decodeInetDiag(unixMessage.header);
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == EPROTO);

	DiagMessage wrongType(AF_INET);
	wrongType.header->nlmsg_type = NLMSG_NOOP;
	CHECK_FALSE(detail::decodeInetDiag(wrongType.header).ok());

	// An attribute that claims more bytes than the message holds.
	DiagMessage badAttr(AF_INET);
	badAttr.addTcpInfo(1);
	auto *attr = reinterpret_cast<nlattr *>(reinterpret_cast<char *>(badAttr.header) + NLMSG_LENGTH(sizeof(inet_diag_msg)));
	attr->nla_len = 4000;
	r = detail::decodeInetDiag(badAttr.header);
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == EPROTO);
}
