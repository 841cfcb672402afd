// Discovery against the real kernel: namespaces made by TestNetwork hold
// only the sockets each test opens, so "exactly these sockets" is checkable.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <linux/tcp.h> // tcp_info with tcpi_notsent_bytes
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "base/netns.h"
#include "netlink/sock_diag.h"
#include "test_network.h"

using namespace ferry;
using namespace ferry::netlink;

namespace {

struct FamilyCase {
	const char *name;
	int family;
	const char *server;       // server host address
	const char *client;       // client host, first address
	const char *client2;      // client host, second address
	const char *client2Net;   // a prefix holding client2 and not client
	std::vector<std::string> serverCidrs;
	std::vector<std::string> clientCidrs;
};

const std::vector<FamilyCase> &familyCases()
{
	static const std::vector<FamilyCase> cases = {
		{"IPv4", AF_INET, "198.51.100.1", "198.51.100.2", "198.51.100.66", "198.51.100.64/26",
		 {"198.51.100.1/24"}, {"198.51.100.2/24", "198.51.100.66/24"}},
		{"IPv6", AF_INET6, "2001:db8::1", "2001:db8::2", "2001:db8::8002", "2001:db8::8000/113",
		 {"2001:db8::1/64"}, {"2001:db8::2/64", "2001:db8::8002/64"}},
	};
	return cases;
}

Endpoint endpoint(const char *address, uint16_t port = 0)
{
	Endpoint e;
	e.family = std::string(address).find(':') == std::string::npos ? AF_INET : AF_INET6;
	REQUIRE(::inet_pton(e.family, address, e.address.data()) == 1);
	e.port = port;
	return e;
}

Endpoint localOf(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	return *Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), len);
}

Endpoint peerOf(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	REQUIRE(::getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	return *Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), len);
}

uint64_t inodeOf(int fd)
{
	struct stat st{};
	REQUIRE(::fstat(fd, &st) == 0);
	return st.st_ino;
}

uint64_t cookieOf(int fd)
{
	uint64_t cookie = 0;
	socklen_t len = sizeof(cookie);
	REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &len) == 0);
	return cookie;
}

// A socket made inside `netns` (sockets keep the namespace they were made in).
UniqueFd socketIn(int netnsFd, int family)
{
	Result<UniqueFd> fd = runInNetns(netnsFd, [family]() -> Result<UniqueFd> {
		UniqueFd s(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
		if (!s)
			return errnoError("socket");
		return s;
	});
	REQUIRE_MESSAGE(fd.ok(), fd.error().message());
	return std::move(*fd);
}

void bindTo(int fd, const Endpoint &e)
{
	socklen_t len = 0;
	sockaddr_storage ss = e.toSockaddr(len);
	REQUIRE(::bind(fd, reinterpret_cast<sockaddr *>(&ss), len) == 0);
}

UniqueFd listener(int netnsFd, const Endpoint &address, bool v6only = true)
{
	UniqueFd fd = socketIn(netnsFd, address.family);
	int one = 1;
	int v6 = v6only ? 1 : 0;
	if (address.family == AF_INET6)
		REQUIRE(::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &v6, sizeof(v6)) == 0);
	REQUIRE(::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) == 0);
	bindTo(fd.get(), address);
	REQUIRE(::listen(fd.get(), 16) == 0);
	return fd;
}

UniqueFd connectFrom(int netnsFd, const Endpoint &local, const Endpoint &remote)
{
	UniqueFd fd = socketIn(netnsFd, remote.family);
	int one = 1;
	// Exact queue sizes: no Nagle holding back a partial segment.
	REQUIRE(::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one)) == 0);
	bindTo(fd.get(), local);
	socklen_t len = 0;
	sockaddr_storage ss = remote.toSockaddr(len);
	REQUIRE_MESSAGE(::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) == 0, "connect to ",
			remote.toString(), ": ", std::strerror(errno));
	return fd;
}

UniqueFd acceptFrom(int listenFd)
{
	pollfd p{listenFd, POLLIN, 0};
	REQUIRE(::poll(&p, 1, 5000) == 1);
	UniqueFd fd(::accept4(listenFd, nullptr, nullptr, SOCK_CLOEXEC));
	REQUIRE(fd.isValid());
	return fd;
}

void sendAll(int fd, size_t bytes)
{
	std::string data(bytes, 'x');
	REQUIRE(::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(bytes));
}

// Polls `condition` for up to 5 seconds.
bool eventually(const std::function<bool()> &condition)
{
	auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
	while (std::chrono::steady_clock::now() < deadline) {
		if (condition())
			return true;
		std::this_thread::sleep_for(std::chrono::milliseconds(5));
	}
	return condition();
}

int ioctlInt(int fd, unsigned long request)
{
	int value = -1;
	REQUIRE(::ioctl(fd, request, &value) == 0);
	return value;
}

uint32_t notSentOf(int fd)
{
	tcp_info info{};
	socklen_t len = sizeof(info);
	REQUIRE(::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0);
	return info.tcpi_notsent_bytes;
}

std::vector<TcpSocketInfo> listIn(int netnsFd, const SocketFilter &filter = {})
{
	Result<std::vector<TcpSocketInfo>> sockets = listTcpSockets(netnsFd, filter);
	REQUIRE_MESSAGE(sockets.ok(), sockets.error().message());
	return std::move(*sockets);
}

std::multiset<uint64_t> inodes(const std::vector<TcpSocketInfo> &sockets)
{
	std::multiset<uint64_t> out;
	for (const TcpSocketInfo &s : sockets)
		out.insert(s.inode);
	return out;
}

std::multiset<uint64_t> inodes(std::initializer_list<int> fds)
{
	std::multiset<uint64_t> out;
	for (int fd : fds)
		out.insert(inodeOf(fd));
	return out;
}

const TcpSocketInfo &findInode(const std::vector<TcpSocketInfo> &sockets, int fd)
{
	uint64_t inode = inodeOf(fd);
	auto it = std::find_if(sockets.begin(), sockets.end(), [&](const TcpSocketInfo &s) { return s.inode == inode; });
	REQUIRE_MESSAGE(it != sockets.end(), "socket inode ", inode, " not listed");
	return *it;
}

// Drops TCP packets in one namespace with a table of its own; the table
// goes with the namespace when TestNetwork removes it.
void dropTcp(const test::TestHost &host, const std::string &hook, const std::string &match)
{
	std::string table = "inet ferry_diag_test";
	test::mustRun(host.exec("nft add table " + table));
	test::mustRun(host.exec("nft add chain " + table + " " + hook + " '{ type filter hook " + hook + " priority 0; }'"));
	test::mustRun(host.exec("nft add rule " + table + " " + hook + " " + match + " drop"));
}

struct Pair {
	test::TestNetwork net;
	test::TestHost server;
	test::TestHost client;
	UniqueFd serverNs;
	UniqueFd clientNs;

	explicit Pair(const FamilyCase &c)
		: server(net.addHost("server", c.serverCidrs)), client(net.addHost("client", c.clientCidrs)),
		  serverNs(server.open()), clientNs(client.open())
	{
	}
};

} // namespace

TEST_CASE("discovery lists exactly the sockets of the namespace, with 4-tuple, state, inode and cookie")
{
	for (const FamilyCase &c : familyCases()) {
		std::string family = c.name;
		CAPTURE(family);
		Pair p(c);
		UniqueFd listen = listener(p.serverNs.get(), endpoint(c.server));
		uint16_t port = localOf(listen.get()).port;
		UniqueFd conn = connectFrom(p.clientNs.get(), endpoint(c.client), endpoint(c.server, port));
		UniqueFd accepted = acceptFrom(listen.get());

		std::vector<TcpSocketInfo> server = listIn(p.serverNs.get());
		REQUIRE(server.size() == 2);
		CHECK(inodes(server) == inodes({listen.get(), accepted.get()}));

		const TcpSocketInfo &l = findInode(server, listen.get());
		CHECK(l.state == TcpSocketState::Listen);
		CHECK(l.flow.local == localOf(listen.get()));
		CHECK(l.flow.remote.family == c.family);
		CHECK(l.flow.remote.port == 0);
		CHECK(l.flow.remote.address == std::array<uint8_t, 16>{});
		CHECK(l.cookie == cookieOf(listen.get()));

		const TcpSocketInfo &a = findInode(server, accepted.get());
		CHECK(a.state == TcpSocketState::Established);
		CHECK(a.flow.local == localOf(accepted.get()));
		CHECK(a.flow.remote == peerOf(accepted.get()));
		CHECK(a.flow.remote == endpoint(c.client, localOf(conn.get()).port));
		CHECK(a.cookie == cookieOf(accepted.get()));
		CHECK(a.cookie != l.cookie);
		CHECK(a.uid == 0);

		// The client's namespace holds only the client's end.
		std::vector<TcpSocketInfo> client = listIn(p.clientNs.get());
		REQUIRE(client.size() == 1);
		CHECK(client[0].inode == inodeOf(conn.get()));
		CHECK(client[0].state == TcpSocketState::Established);
		CHECK(client[0].flow == FlowId{localOf(conn.get()), peerOf(conn.get())});
		CHECK(client[0].cookie == cookieOf(conn.get()));

		// Family selects one dump.
		SocketFilter other;
		other.family = c.family == AF_INET ? AF_INET6 : AF_INET;
		CHECK(listIn(p.serverNs.get(), other).empty());
		SocketFilter same;
		same.family = c.family;
		CHECK(listIn(p.serverNs.get(), same).size() == 2);
	}
}

TEST_CASE("discovery reports unread receive data, unacked and unsent send data exactly")
{
	for (const FamilyCase &c : familyCases()) {
		std::string family = c.name;
		CAPTURE(family);
		Pair p(c);
		UniqueFd listen = listener(p.serverNs.get(), endpoint(c.server));
		uint16_t serverPort = localOf(listen.get()).port;
		UniqueFd conn = connectFrom(p.clientNs.get(), endpoint(c.client), endpoint(c.server, serverPort));
		UniqueFd accepted = acceptFrom(listen.get());
		uint16_t clientPort = localOf(conn.get()).port;

		Result<SockDiag> serverDiag = SockDiag::open(p.serverNs.get());
		Result<SockDiag> clientDiag = SockDiag::open(p.clientNs.get());
		REQUIRE(serverDiag.ok());
		REQUIRE(clientDiag.ok());
		SocketFilter withInfo;
		withInfo.withTcpInfo = true;
		auto clientView = [&] {
			Result<std::vector<TcpSocketInfo>> r = clientDiag->listTcp(withInfo);
			REQUIRE_MESSAGE(r.ok(), r.error().message());
			REQUIRE(r->size() == 1);
			return (*r)[0];
		};

		// 3000 bytes delivered and not read: the server's receive queue.
		sendAll(conn.get(), 3000);
		REQUIRE(eventually([&] { return ioctlInt(accepted.get(), SIOCINQ) == 3000; }));
		REQUIRE(eventually([&] { return ioctlInt(conn.get(), SIOCOUTQ) == 0; }));
		{
			Result<std::vector<TcpSocketInfo>> r = serverDiag->listTcp();
			REQUIRE(r.ok());
			CHECK(findInode(*r, accepted.get()).receiveQueue == 3000);
			CHECK(findInode(*r, accepted.get()).sendQueue == 0);
			TcpSocketInfo mine = clientView();
			CHECK(mine.sendQueue == 0);
			CHECK(mine.receiveQueue == 0);
			REQUIRE(mine.notSentBytes.has_value());
			CHECK(*mine.notSentBytes == 0);
		}

		// The server drops what the client sends: 2000 bytes sent, unacked.
		dropTcp(p.server, "input", "tcp sport " + std::to_string(clientPort));
		sendAll(conn.get(), 2000);
		REQUIRE(eventually([&] { return notSentOf(conn.get()) == 0; }));
		{
			TcpSocketInfo mine = clientView();
			CHECK(mine.sendQueue == 2000);
			REQUIRE(mine.notSentBytes.has_value());
			CHECK(*mine.notSentBytes == 0);
		}

		// The client's own output is dropped: 1500 more bytes never leave.
		dropTcp(p.client, "output", "tcp dport " + std::to_string(serverPort));
		sendAll(conn.get(), 1500);
		REQUIRE(eventually([&] { return ioctlInt(conn.get(), SIOCOUTQ) == 3500; }));
		{
			TcpSocketInfo mine = clientView();
			CHECK(mine.sendQueue == 3500);
			REQUIRE(mine.notSentBytes.has_value());
			CHECK(*mine.notSentBytes == 1500);
			CHECK(mine.sendQueue - *mine.notSentBytes == 2000); // unacked
		}
		Result<std::vector<TcpSocketInfo>> r = serverDiag->listTcp();
		REQUIRE(r.ok());
		CHECK(findInode(*r, accepted.get()).receiveQueue == 3000);

		// Without withTcpInfo the kernel sends no tcp_info.
		Result<std::vector<TcpSocketInfo>> plain = clientDiag->listTcp();
		REQUIRE(plain.ok());
		REQUIRE(plain->size() == 1);
		CHECK_FALSE((*plain)[0].notSentBytes.has_value());
		CHECK((*plain)[0].sendQueue == 3500);
	}
}

TEST_CASE("a dual-stack socket with an IPv4 peer is listed in the IPv6 dump with v4-mapped addresses")
{
	const FamilyCase &v4 = familyCases()[0];
	Pair p(v4);
	Endpoint any6;
	any6.family = AF_INET6;
	UniqueFd listen = listener(p.serverNs.get(), any6, /*v6only=*/false);
	uint16_t port = localOf(listen.get()).port;
	UniqueFd conn = connectFrom(p.clientNs.get(), endpoint(v4.client), endpoint(v4.server, port));
	UniqueFd accepted = acceptFrom(listen.get());

	std::vector<TcpSocketInfo> all = listIn(p.serverNs.get());
	REQUIRE(all.size() == 2);
	const TcpSocketInfo &a = findInode(all, accepted.get());
	CHECK(a.flow.local.family == AF_INET6);
	CHECK(a.flow.local.isV4Mapped());
	CHECK(a.flow.local == endpoint("::ffff:198.51.100.1", port));
	CHECK(a.flow.remote == endpoint("::ffff:198.51.100.2", localOf(conn.get()).port));
	CHECK(a.flow.remote == peerOf(accepted.get()));

	SocketFilter inet;
	inet.family = AF_INET;
	CHECK(listIn(p.serverNs.get(), inet).empty());

	// An IPv4 prefix matches the v4-mapped peer.
	SocketFilter byPrefix;
	byPrefix.remotePrefixes = {*CidrPrefix::parse("198.51.100.2/32")};
	std::vector<TcpSocketInfo> matched = listIn(p.serverNs.get(), byPrefix);
	REQUIRE(matched.size() == 1);
	CHECK(matched[0].inode == inodeOf(accepted.get()));
}

TEST_CASE("filters: local ports, remote prefixes and states (in the kernel), alone and combined")
{
	for (const FamilyCase &c : familyCases()) {
		std::string family = c.name;
		CAPTURE(family);
		Pair p(c);
		UniqueFd l1 = listener(p.serverNs.get(), endpoint(c.server));
		UniqueFd l2 = listener(p.serverNs.get(), endpoint(c.server));
		uint16_t port1 = localOf(l1.get()).port;
		uint16_t port2 = localOf(l2.get()).port;
		UniqueFd c1 = connectFrom(p.clientNs.get(), endpoint(c.client), endpoint(c.server, port1));
		UniqueFd a1 = acceptFrom(l1.get());
		UniqueFd c2 = connectFrom(p.clientNs.get(), endpoint(c.client), endpoint(c.server, port1));
		UniqueFd a2 = acceptFrom(l1.get());
		UniqueFd c3 = connectFrom(p.clientNs.get(), endpoint(c.client2), endpoint(c.server, port2));
		UniqueFd a3 = acceptFrom(l2.get());
		int ns = p.serverNs.get();

		REQUIRE(listIn(ns).size() == 5);

		SocketFilter byPort;
		byPort.localPorts = {port1};
		CHECK(inodes(listIn(ns, byPort)) == inodes({l1.get(), a1.get(), a2.get()}));
		byPort.localPorts = {port1, port2};
		CHECK(inodes(listIn(ns, byPort)) == inodes({l1.get(), l2.get(), a1.get(), a2.get(), a3.get()}));
		byPort.localPorts = {1};
		CHECK(listIn(ns, byPort).empty());

		SocketFilter byPrefix;
		byPrefix.remotePrefixes = {*CidrPrefix::parse(c.client2Net)};
		CHECK(inodes(listIn(ns, byPrefix)) == inodes({a3.get()}));
		byPrefix.remotePrefixes = {*CidrPrefix::parse(c.client)};
		CHECK(inodes(listIn(ns, byPrefix)) == inodes({a1.get(), a2.get()}));
		byPrefix.remotePrefixes = {*CidrPrefix::parse(c.client), *CidrPrefix::parse(c.client2Net)};
		CHECK(inodes(listIn(ns, byPrefix)) == inodes({a1.get(), a2.get(), a3.get()}));
		// A prefix of the other family matches nothing.
		byPrefix.remotePrefixes = {*CidrPrefix::parse(c.family == AF_INET ? "2001:db8::/32" : "198.51.100.0/24")};
		CHECK(listIn(ns, byPrefix).empty());

		SocketFilter byState;
		byState.states = {TcpSocketState::Listen};
		CHECK(inodes(listIn(ns, byState)) == inodes({l1.get(), l2.get()}));
		byState.states = {TcpSocketState::Established};
		CHECK(inodes(listIn(ns, byState)) == inodes({a1.get(), a2.get(), a3.get()}));
		byState.states = TcpStateSet{};
		CHECK(listIn(ns, byState).empty());

		// Half-close c3: the server's end goes to CLOSE_WAIT, the client's to FIN_WAIT2.
		REQUIRE(::shutdown(c3.get(), SHUT_WR) == 0);
		SocketFilter closeWait;
		closeWait.states = {TcpSocketState::CloseWait};
		REQUIRE(eventually([&] { return listIn(ns, closeWait).size() == 1; }));
		CHECK(inodes(listIn(ns, closeWait)) == inodes({a3.get()}));
		CHECK(findInode(listIn(ns, closeWait), a3.get()).state == TcpSocketState::CloseWait);
		SocketFilter finWait2;
		finWait2.states = {TcpSocketState::FinWait2};
		REQUIRE(eventually([&] { return listIn(p.clientNs.get(), finWait2).size() == 1; }));
		CHECK(inodes(listIn(p.clientNs.get(), finWait2)) == inodes({c3.get()}));
		// ESTABLISHED no longer includes it.
		byState.states = {TcpSocketState::Established};
		CHECK(inodes(listIn(ns, byState)) == inodes({a1.get(), a2.get()}));

		// Conditions combine with AND.
		SocketFilter combined;
		combined.localPorts = {port1};
		combined.states = {TcpSocketState::Listen};
		CHECK(inodes(listIn(ns, combined)) == inodes({l1.get()}));
		combined.states = {TcpSocketState::Established, TcpSocketState::CloseWait};
		combined.localPorts = {port2};
		CHECK(inodes(listIn(ns, combined)) == inodes({a3.get()}));
		combined.remotePrefixes = {*CidrPrefix::parse(c.client)};
		CHECK(listIn(ns, combined).empty());
	}
}

TEST_CASE("one SockDiag serves many dumps, and bad requests fail with context")
{
	const FamilyCase &c = familyCases()[1];
	Pair p(c);
	Result<SockDiag> diag = SockDiag::open(p.serverNs.get());
	REQUIRE(diag.ok());
	// The label names the namespace the socket was opened in, not ours.
	std::string label = diag->netnsLabel();
	CHECK(label == "net:[" + std::to_string(*netnsInode(p.serverNs.get())) + "]");

	UniqueFd listen = listener(p.serverNs.get(), endpoint(c.server));
	for (int i = 0; i < 3; ++i) {
		Result<std::vector<TcpSocketInfo>> r = diag->listTcp();
		REQUIRE(r.ok());
		CHECK(r->size() == 1);
	}
	SocketFilter bad;
	bad.family = AF_UNIX;
	Result<std::vector<TcpSocketInfo>> refused = diag->listTcp(bad);
	REQUIRE_FALSE(refused.ok());
	CHECK(refused.error().code == EINVAL);
	CHECK(refused.error().context.find("netns=" + label) != std::string::npos);
	CHECK(refused.error().context.find("phase=discovery") != std::string::npos);
	// The socket is still usable after a refused filter.
	CHECK(diag->listTcp().ok());

	Result<SockDiag> nowhere = SockDiag::open(-1);
	CHECK_FALSE(nowhere.ok());
}
