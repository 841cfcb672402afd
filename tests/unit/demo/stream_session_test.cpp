#include <doctest/doctest.h>

#include <sys/socket.h>

#include "stream_session.h"

using namespace ferry;
using namespace ferry::demo;

namespace {

// A connected pair of non-blocking stream sockets: the session only needs
// send/recv semantics, so a unix socketpair stands in for TCP here (the
// privileged tests use real TCP).
std::pair<UniqueFd, UniqueFd> streamPair()
{
	int fds[2];
	REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, fds) == 0);
	return {UniqueFd(fds[0]), UniqueFd(fds[1])};
}

} // namespace

TEST_CASE("two sessions stream both ways and verify each other")
{
	auto [a, b] = streamPair();
	Hello hello{1234, false};
	StreamSession client(std::move(a), Direction::ClientToServer, hello, {});
	StreamSession server(std::move(b), Direction::ServerToClient, hello, {});

	auto sent = client.send(10000);
	REQUIRE(sent.ok());
	CHECK(sent->bytes == 10000);
	CHECK(client.sent() == 10000);
	auto got = server.receive(1 << 20);
	REQUIRE(got.ok());
	CHECK(got->bytes == 10000);
	CHECK(server.received() == 10000);

	REQUIRE(server.send(777).ok());
	REQUIRE(client.receive(1 << 20).ok());
	CHECK(client.received() == 777);

	// Nothing queued: no bytes, no end of stream.
	auto none = server.receive(1 << 20);
	REQUIRE(none.ok());
	CHECK(none->bytes == 0);
	CHECK_FALSE(none->endOfStream);
}

TEST_CASE("a full socket stops send with wouldBlock and counts only accepted bytes")
{
	auto [a, b] = streamPair();
	StreamSession client(std::move(a), Direction::ClientToServer, Hello{1, false}, {});
	StreamSession server(std::move(b), Direction::ServerToClient, Hello{1, false}, {});
	uint64_t total = 0;
	for (int i = 0; i < 1000; i++) {
		auto r = client.send(1 << 20);
		REQUIRE(r.ok());
		total += r->bytes;
		if (r->wouldBlock)
			break;
	}
	CHECK(client.sent() == total);
	uint64_t drained = 0;
	while (true) {
		auto r = server.receive(1 << 20);
		REQUIRE(r.ok());
		if (r->bytes == 0)
			break;
		drained += r->bytes;
	}
	CHECK(drained == total);
	CHECK(server.received() == total);
}

TEST_CASE("a session resumed from handed-over offsets continues the same streams")
{
	auto [a, b] = streamPair();
	Hello hello{77, false};
	StreamSession client(std::move(a), Direction::ClientToServer, hello, {});
	UniqueFd serverFd = std::move(b);
	{
		StreamSession oldServer(UniqueFd(::dup(serverFd.get())), Direction::ServerToClient, hello, {});
		REQUIRE(client.send(3000).ok());
		REQUIRE(oldServer.receive(1000).ok());
		REQUIRE(oldServer.send(1500).ok());
		CHECK(oldServer.received() == 1000);
		// The "new process" takes over with the old one's offsets.
		StreamSession newServer(std::move(serverFd), Direction::ServerToClient, hello,
			StreamSession::Position{oldServer.sent(), oldServer.received()});
		auto rest = newServer.receive(1 << 20);
		REQUIRE(rest.ok());
		CHECK(newServer.received() == 3000);
		REQUIRE(newServer.send(500).ok());
	}
	auto got = client.receive(1 << 20);
	REQUIRE(got.ok());
	CHECK(client.received() == 2000);
}

TEST_CASE("a wrong resume offset is caught by the peer")
{
	auto [a, b] = streamPair();
	Hello hello{9, false};
	StreamSession client(std::move(a), Direction::ClientToServer, hello, {});
	// Off by one byte: as if one byte had been duplicated across a handoff.
	StreamSession server(std::move(b), Direction::ServerToClient, hello, StreamSession::Position{1, 0});
	REQUIRE(server.send(2000).ok());
	auto r = client.receive(1 << 20);
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == EBADMSG);
}

TEST_CASE("end of stream and data on an idle session")
{
	auto [a, b] = streamPair();
	StreamSession idle(std::move(a), Direction::ClientToServer, Hello{3, true}, {});
	auto nothing = idle.send(4096);
	REQUIRE(nothing.ok());
	CHECK(nothing->bytes == 0);
	REQUIRE(::send(b.get(), "x", 1, 0) == 1);
	auto r = idle.receive(100);
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == EPROTO);

	auto [c, d] = streamPair();
	StreamSession s(std::move(c), Direction::ClientToServer, Hello{3, false}, {});
	d.reset();
	auto eof = s.receive(100);
	REQUIRE(eof.ok());
	CHECK(eof->endOfStream);
}

TEST_CASE("the token bucket paces and does not pay back a pause")
{
	Clock::time_point t0 = Clock::now();
	TokenBucket bucket(100000, t0); // 100 kB/s, at most 10 kB banked
	CHECK(bucket.available() == 0);
	bucket.refill(t0 + std::chrono::milliseconds(10));
	CHECK(bucket.available() == 1000);
	bucket.spend(600);
	CHECK(bucket.available() == 400);
	bucket.refill(t0 + std::chrono::seconds(5)); // a migration's pause
	CHECK(bucket.available() == 10000);
	bucket.spend(20000);
	CHECK(bucket.available() == 0);

	TokenBucket unlimited(0, t0);
	CHECK(unlimited.unlimited());
	CHECK(unlimited.available() == UINT64_MAX);
}
