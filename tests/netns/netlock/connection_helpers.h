// Test helpers for the flow-lock tests: two hosts on the test bridge, TCP
// connections between them, and "did these bytes arrive within T" checks.
// Header-only: each test executable includes it once.
#pragma once

#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <string>

#include "base/flow.h"
#include "base/netns.h"
#include "test_network.h"

namespace ferry::test::netlock {

inline constexpr const char *kHostV4 = "198.51.100.1";
inline constexpr const char *kPeerV4 = "198.51.100.2";
inline constexpr const char *kHostV6 = "2001:db8::1";
inline constexpr const char *kPeerV6 = "2001:db8::2";
inline constexpr uint32_t kMark = 0x66657272; // "ferr"

// How the client side of a test connection addresses its peer.
enum class Variant { V4, V6, V4Mapped };

inline const char *variantName(Variant v)
{
	switch (v) {
	case Variant::V4:
		return "IPv4";
	case Variant::V6:
		return "IPv6";
	case Variant::V4Mapped:
		return "IPv4-mapped IPv6";
	}
	return "?";
}

// Host "a" (the one that gets locked) and "peer", both dual-stack. The
// TestHost values are copies: TestNetwork's references do not survive a
// later addHost().
struct TwoHosts {
	TestNetwork net;
	TestHost host;
	TestHost peer;

	TwoHosts()
	{
		host = net.addHost("a", {std::string(kHostV4) + "/24", std::string(kHostV6) + "/64"});
		peer = net.addHost("peer", {std::string(kPeerV4) + "/24", std::string(kPeerV6) + "/64"});
	}
};

inline Endpoint endpoint(const char *address, uint16_t port)
{
	std::string text = std::strchr(address, ':') ? "[" + std::string(address) + "]:" : std::string(address) + ":";
	Result<Endpoint> e = Endpoint::parse(text + std::to_string(port));
	REQUIRE(e.ok());
	return *e;
}

inline Endpoint localOf(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	Result<Endpoint> e = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), len);
	REQUIRE(e.ok());
	return *e;
}

inline Endpoint remoteOf(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	REQUIRE(::getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0);
	Result<Endpoint> e = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), len);
	REQUIRE(e.ok());
	return *e;
}

// One established connection: `client` lives in the locked host, `server`
// in the peer. `flow` is the connection as the client socket sees it.
struct Connection {
	UniqueFd client;
	UniqueFd server;
	FlowId flow;
};

inline Connection connectHosts(const TwoHosts &hosts, Variant variant)
{
	const bool v6Listener = variant == Variant::V6;
	UniqueFd peerNs = hosts.peer.open();
	// Endpoints are made out here: REQUIRE must not throw on another thread.
	Endpoint bindTo = endpoint(v6Listener ? kPeerV6 : kPeerV4, 0); // port 0: the kernel picks
	Result<UniqueFd> listener = runInNetns(peerNs.get(), [&]() -> Result<UniqueFd> {
		socklen_t len = 0;
		sockaddr_storage ss = bindTo.toSockaddr(len);
		UniqueFd fd(::socket(bindTo.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0 || ::listen(fd.get(), 8) < 0)
			return errnoError("listen in peer");
		return fd;
	});
	REQUIRE(listener.ok());
	uint16_t port = localOf(listener->get()).port;

	UniqueFd hostNs = hosts.host.open();
	Endpoint to = variant == Variant::V4 ? endpoint(kPeerV4, port)
	              : variant == Variant::V6 ? endpoint(kPeerV6, port)
	                                       : endpoint((std::string("::ffff:") + kPeerV4).c_str(), port);
	Result<UniqueFd> client = runInNetns(hostNs.get(), [&]() -> Result<UniqueFd> {
		socklen_t len = 0;
		sockaddr_storage ss = to.toSockaddr(len);
		UniqueFd fd(::socket(to.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (!fd)
			return errnoError("socket in host");
		int one = 1;
		::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0)
			return errnoError("connect from host");
		return fd;
	});
	REQUIRE(client.ok());
	UniqueFd server(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
	REQUIRE(server.isValid());
	Connection c{std::move(*client), std::move(server), {}};
	c.flow = FlowId{localOf(c.client.get()), remoteOf(c.client.get())};
	if (variant == Variant::V4Mapped)
		REQUIRE(c.flow.local.isV4Mapped());
	return c;
}

inline void sendAll(int fd, const std::string &data)
{
	size_t sent = 0;
	while (sent < data.size()) {
		ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
		REQUIRE(n > 0);
		sent += static_cast<size_t>(n);
	}
}

// Whatever arrives on `fd` within `timeoutMs`, stopping early once `want`
// bytes are in. A reset or an error fails the test: the lock must never
// cause one.
inline std::string receiveWithin(int fd, size_t want, int timeoutMs)
{
	std::string got;
	auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeoutMs);
	while (got.size() < want) {
		auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
		if (left.count() <= 0)
			break;
		pollfd pfd{fd, POLLIN, 0};
		int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
		REQUIRE(ready >= 0);
		if (ready == 0)
			break;
		char buffer[4096];
		ssize_t n = ::recv(fd, buffer, sizeof(buffer), MSG_DONTWAIT);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			continue;
		INFO("recv: " << std::strerror(errno));
		REQUIRE(n > 0); // 0 = FIN, <0 = RST or error: both are failures here
		got.append(buffer, static_cast<size_t>(n));
	}
	return got;
}

// Sends `data` both ways and checks each side gets exactly it.
inline void exchange(const Connection &c, const std::string &data, int timeoutMs = 5000)
{
	sendAll(c.client.get(), "c:" + data);
	sendAll(c.server.get(), "s:" + data);
	CHECK(receiveWithin(c.server.get(), data.size() + 2, timeoutMs) == "c:" + data);
	CHECK(receiveWithin(c.client.get(), data.size() + 2, timeoutMs) == "s:" + data);
}

// `nft <args>` inside the host's namespace.
inline std::string nft(const TestHost &host, const std::string &args)
{
	return captureOutput(host.exec("nft " + args));
}

inline bool hasTable(const TestHost &host, const std::string &familyAndName)
{
	return nft(host, "list tables").find("table " + familyAndName + "\n") != std::string::npos;
}

} // namespace ferry::test::netlock
