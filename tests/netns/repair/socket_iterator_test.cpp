// SocketIterator (agent/repair/socket_iterator.h) and the BPF census
// against the real kernel: every fact the iterator reports equals what
// getsockopt() answers, for random non-default options on listeners and
// both ends of connections over IPv4, IPv6 and IPv4-mapped IPv6; a census
// with the iterator gives the same snapshots as one without (the fallback)
// and as none; urgent data is still refused; and a thread without CAP_BPF
// and CAP_SYS_ADMIN cannot load it and is told why. Everything runs in a
// namespace of the test's own, over loopback.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <linux/capability.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "base/netns.h"
#include "repair/diag_lookup.h"
#include "repair/kernel_features.h"
#include "repair/socket_iterator.h"
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

// The test's own namespace, entered by this thread for the test's length.
struct Namespace {
	test::TestNetwork net;
	test::TestHost host = net.addIsolatedHost("iter");
	UniqueFd fd = host.open();
	ScopedNetns inside = enter(fd.get());

	static ScopedNetns enter(int netns)
	{
		Result<ScopedNetns> s = ScopedNetns::enter(netns);
		REQUIRE_MESSAGE(s.ok(), s.error().message());
		return std::move(*s);
	}
};

void setInt(int fd, int level, int name, int value)
{
	INFO("setsockopt level " << level << " option " << name << " value " << value);
	REQUIRE(::setsockopt(fd, level, name, &value, sizeof(value)) == 0);
}

int getInt(int fd, int level, int name)
{
	int value = 0;
	socklen_t length = sizeof(value);
	REQUIRE(::getsockopt(fd, level, name, &value, &length) == 0);
	return value;
}

uint64_t cookieOf(int fd)
{
	uint64_t cookie = 0;
	socklen_t length = sizeof(cookie);
	REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length) == 0);
	return cookie;
}

uint16_t portOf(int fd)
{
	sockaddr_storage ss{};
	socklen_t length = sizeof(ss);
	REQUIRE(::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &length) == 0);
	return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in *>(&ss)->sin_port
	                                     : reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
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

// A listener on loopback (:: for the mapped family, which must then accept
// IPv4, so V6ONLY stays off there). `v6Only` applies to the IPv6 family.
UniqueFd listenOn(Family family, bool v6Only)
{
	UniqueFd fd(::socket(family == Family::V4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
	REQUIRE(fd);
	sockaddr_storage ss{};
	socklen_t length;
	if (family == Family::V4) {
		auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		length = sizeof(sockaddr_in);
	} else {
		setInt(fd.get(), SOL_IPV6, IPV6_V6ONLY, family == Family::V6 && v6Only);
		auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = family == Family::V6 ? in6addr_loopback : in6addr_any;
		length = sizeof(sockaddr_in6);
	}
	REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), length) == 0);
	REQUIRE(::listen(fd.get(), 64) == 0);
	return fd;
}

// A client connected to `port`; `beforeConnect` runs on it first.
UniqueFd connectTo(Family family, uint16_t port, const std::function<void(int)> &beforeConnect)
{
	bool v6 = family == Family::V6;
	UniqueFd fd(::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
	REQUIRE(fd);
	if (beforeConnect)
		beforeConnect(fd.get());
	sockaddr_storage to{};
	socklen_t length;
	if (v6) {
		auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&to);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		sin6->sin6_port = htons(port);
		length = sizeof(sockaddr_in6);
	} else {
		auto *sin = reinterpret_cast<sockaddr_in *>(&to);
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		sin->sin_port = htons(port);
		length = sizeof(sockaddr_in);
	}
	REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr *>(&to), length) == 0);
	return fd;
}

// Sets a random choice of the options the iterator covers, each to a
// random value, most of them away from the default.
void randomOptions(int fd, std::mt19937 &rng)
{
	auto coin = [&]() { return (rng() & 1) != 0; };
	auto range = [&](int low, int high) { return low + static_cast<int>(rng() % static_cast<unsigned>(high - low + 1)); };
	setInt(fd, SOL_TCP, TCP_NODELAY, coin());
	setInt(fd, SOL_TCP, TCP_CORK, coin());
	setInt(fd, SOL_SOCKET, SO_KEEPALIVE, coin());
	if (coin())
		setInt(fd, SOL_TCP, TCP_KEEPIDLE, range(1, 32767));
	if (coin())
		setInt(fd, SOL_TCP, TCP_KEEPINTVL, range(1, 32767));
	if (coin())
		setInt(fd, SOL_TCP, TCP_KEEPCNT, range(1, 127));
	if (coin())
		setInt(fd, SOL_TCP, TCP_USER_TIMEOUT, range(1, 10000000));
	if (coin())
		setInt(fd, SOL_TCP, TCP_NOTSENT_LOWAT, range(1, 1 << 24));
	if (coin())
		setInt(fd, SOL_TCP, TCP_WINDOW_CLAMP, range(1, 1 << 20));
	switch (rng() % 3) {
	case 0:
		setInt(fd, SOL_TCP, TCP_LINGER2, -range(1, 5));
		break;
	case 1:
		setInt(fd, SOL_TCP, TCP_LINGER2, range(1, 120));
		break;
	default:
		break; // the netns default (tcp_fin_timeout)
	}
	setInt(fd, SOL_SOCKET, SO_OOBINLINE, coin());
	setInt(fd, SOL_SOCKET, SO_REUSEADDR, coin());
	setInt(fd, SOL_SOCKET, SO_REUSEPORT, coin());
	if (coin())
		setInt(fd, SOL_SOCKET, SO_SNDBUF, range(4096, 1 << 20));
	setInt(fd, SOL_SOCKET, SO_BUF_LOCK, range(0, 3));
	if (coin()) {
		linger l{coin() ? 1 : 0, coin() ? 0 : range(1, 100000)};
		REQUIRE(::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) == 0);
	}
}

struct Probe {
	UniqueFd fd;
	int family; // the socket's own: a mapped connection's client is AF_INET
	bool listener = false;
	bool urgent = false; // an urgent byte was sent to it and not read
	std::string name;
};

// Reads the MSS clamp as snapshot() does: TCP_MAXSEG in repair mode.
int mssClampOf(int fd)
{
	setInt(fd, SOL_TCP, TCP_REPAIR, TCP_REPAIR_ON);
	int mss = getInt(fd, SOL_TCP, TCP_MAXSEG);
	// Off without the window probe: the test changes nothing.
	setInt(fd, SOL_TCP, TCP_REPAIR, TCP_REPAIR_OFF_NO_WP);
	return mss;
}

std::optional<unsigned> configuredHz()
{
	if (::access("/proc/config.gz", R_OK) != 0)
		return std::nullopt;
	std::string line = test::captureOutput("zcat /proc/config.gz | grep '^CONFIG_HZ=' || true");
	if (line.rfind("CONFIG_HZ=", 0) != 0)
		return std::nullopt;
	return static_cast<unsigned>(std::stoul(line.substr(10)));
}

void checkAgainstGetsockopt(const Probe &p, const IteratedSocket &r)
{
	int fd = p.fd.get();
	CAPTURE(p.name);
	int family = p.family;
	CHECK(r.family == family);
	tcp_info info{};
	socklen_t length = sizeof(info);
	REQUIRE(::getsockopt(fd, SOL_TCP, TCP_INFO, &info, &length) == 0);
	CHECK(r.state == info.tcpi_state);

	// On this kernel (6.18, root, BTF) every fact is known; V6ONLY only
	// exists on AF_INET6 sockets.
	for (size_t i = 0; i < kSocketFactCount; ++i) {
		CAPTURE(i);
		bool expected = static_cast<SocketFact>(i) != SocketFact::V6Only || family == AF_INET6;
		CHECK(r.get(static_cast<SocketFact>(i)).has_value() == expected);
	}

	struct IntOption {
		SocketFact fact;
		int level;
		int name;
		const char *what;
	};
	const IntOption options[] = {
		{SocketFact::NoDelay, SOL_TCP, TCP_NODELAY, "TCP_NODELAY"},
		{SocketFact::Cork, SOL_TCP, TCP_CORK, "TCP_CORK"},
		{SocketFact::KeepAlive, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE"},
		{SocketFact::KeepIdle, SOL_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE"},
		{SocketFact::KeepInterval, SOL_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL"},
		{SocketFact::KeepCount, SOL_TCP, TCP_KEEPCNT, "TCP_KEEPCNT"},
		{SocketFact::UserTimeout, SOL_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT"},
		{SocketFact::NotSentLowat, SOL_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT"},
		{SocketFact::WindowClamp, SOL_TCP, TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP"},
		{SocketFact::Linger2, SOL_TCP, TCP_LINGER2, "TCP_LINGER2"},
		{SocketFact::OobInline, SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE"},
		{SocketFact::ReuseAddress, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR"},
		{SocketFact::ReusePort, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT"},
		{SocketFact::BufferLocks, SOL_SOCKET, SO_BUF_LOCK, "SO_BUF_LOCK"},
	};
	for (const IntOption &o : options) {
		CAPTURE(o.what);
		std::optional<int> value = r.get(o.fact);
		REQUIRE(value.has_value());
		CHECK(*value == getInt(fd, o.level, o.name));
	}
	if (family == AF_INET6) {
		REQUIRE(r.get(SocketFact::V6Only).has_value());
		CHECK(*r.get(SocketFact::V6Only) == getInt(fd, SOL_IPV6, IPV6_V6ONLY));
	}
	linger l{};
	length = sizeof(l);
	REQUIRE(::getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &length) == 0);
	CHECK(r.get(SocketFact::LingerOn) == l.l_onoff);
	CHECK(r.get(SocketFact::LingerSeconds) == l.l_linger);

	// urg_data 0 must mean what recv(MSG_OOB) then answers: nothing
	// urgent (EINVAL); a socket sent an urgent byte must not read as 0.
	std::optional<int> urgent = r.get(SocketFact::UrgentData);
	REQUIRE(urgent.has_value());
	if (!p.listener) {
		CHECK((*urgent != 0) == p.urgent);
		if (*urgent == 0) {
			char c;
			CHECK(::recv(fd, &c, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT) < 0);
			CHECK(errno == EINVAL);
		}
		CHECK(r.get(SocketFact::MssClamp) == mssClampOf(fd));
	} else {
		CHECK(*urgent == 0);
	}
}

void waitUrgent(int fd)
{
	pollfd p{fd, POLLPRI, 0};
	REQUIRE(::poll(&p, 1, 2000) == 1);
}

void exchange(int from, int to, size_t bytes)
{
	std::vector<uint8_t> data(bytes);
	for (size_t i = 0; i < bytes; ++i)
		data[i] = static_cast<uint8_t>(i * 13 + 5);
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
	std::this_thread::sleep_for(std::chrono::milliseconds(250));
}

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
	CHECK(a.options.noDelay == b.options.noDelay);
	CHECK(a.options.cork == b.options.cork);
	CHECK(a.options.keepAlive == b.options.keepAlive);
	CHECK(a.options.keepIdle == b.options.keepIdle);
	CHECK(a.options.keepInterval == b.options.keepInterval);
	CHECK(a.options.keepCount == b.options.keepCount);
	CHECK(a.options.userTimeout == b.options.userTimeout);
	CHECK(a.options.notSentLowat == b.options.notSentLowat);
	CHECK(a.options.windowClamp == b.options.windowClamp);
	CHECK(a.options.linger2 == b.options.linger2);
	CHECK(a.options.lingerOn == b.options.lingerOn);
	CHECK(a.options.lingerSeconds == b.options.lingerSeconds);
	CHECK(a.options.sendBufferLocked == b.options.sendBufferLocked);
	CHECK(a.options.receiveBufferLocked == b.options.receiveBufferLocked);
	CHECK(a.options.oobInline == b.options.oobInline);
	CHECK(a.options.reuseAddress == b.options.reuseAddress);
	CHECK(a.options.reusePort == b.options.reusePort);
	CHECK(a.options.v6Only == b.options.v6Only);
	CHECK(a.options == b.options);
}

} // namespace

TEST_CASE("every fact the BPF iterator reports equals what getsockopt answers")
{
	std::random_device seedSource;
	unsigned seed = seedSource();
	CAPTURE(seed); // a failure names the seed that reproduces it
	std::mt19937 rng(seed);
	Namespace ns;

	std::vector<Probe> probes;
	for (Family family : {Family::V4, Family::V6, Family::Mapped}) {
		std::string base = familyName(family);
		// Listeners with options of their own; the first one also serves
		// the connections below, whose accepted ends inherit from it.
		for (int i = 0; i < 4; ++i) {
			UniqueFd listener = listenOn(family, (rng() & 1) != 0);
			randomOptions(listener.get(), rng);
			probes.push_back({std::move(listener), family == Family::V4 ? AF_INET : AF_INET6, true, false,
			                  base + " listener " + std::to_string(i)});
		}
		int listener = probes[probes.size() - 4].fd.get();
		uint16_t port = portOf(listener);
		for (int i = 0; i < 12; ++i) {
			bool plain = i < 2; // a few with nothing set at all
			UniqueFd client = connectTo(family, port, [&](int fd) {
				if (plain)
					return;
				if (rng() & 1)
					setInt(fd, SOL_TCP, TCP_MAXSEG, 600 + static_cast<int>(rng() % 800));
				if (family == Family::V6)
					setInt(fd, SOL_IPV6, IPV6_V6ONLY, static_cast<int>(rng() & 1));
			});
			UniqueFd server(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
			REQUIRE(server);
			if (!plain) {
				randomOptions(client.get(), rng);
				randomOptions(server.get(), rng);
			}
			// Every third connection: an urgent byte to the accepted end.
			bool urgent = i % 3 == 2;
			if (urgent) {
				char c = 'U';
				REQUIRE(::send(client.get(), &c, 1, MSG_OOB | MSG_NOSIGNAL) == 1);
				waitUrgent(server.get());
			}
			std::string name = base + " connection " + std::to_string(i);
			probes.push_back({std::move(client), family == Family::V6 ? AF_INET6 : AF_INET, false, false, name + " client"});
			probes.push_back({std::move(server), family == Family::V4 ? AF_INET : AF_INET6, false, urgent, name + " server"});
		}
	}

	Result<const SocketIterator *> iterator = SocketIterator::shared();
	REQUIRE_MESSAGE(iterator.ok(), iterator.error().message());
	Result<std::vector<IteratedSocket>> sockets = (*iterator)->read();
	REQUIRE_MESSAGE(sockets.ok(), sockets.error().message());
	std::map<uint64_t, IteratedSocket> byCookie;
	for (const IteratedSocket &s : *sockets)
		CHECK(byCookie.emplace(s.cookie, s).second); // one record per socket
	// Only this namespace's sockets: ours, nothing else.
	CHECK(byCookie.size() == probes.size());

	std::optional<unsigned> hz = configuredHz();
	for (const Probe &p : probes) {
		auto it = byCookie.find(cookieOf(p.fd.get()));
		REQUIRE_MESSAGE(it != byCookie.end(), p.name);
		const IteratedSocket &r = it->second;
		CHECK(r.hz != 0);
		if (hz)
			CHECK(r.hz == *hz);
		checkAgainstGetsockopt(p, r);
	}
}

TEST_CASE("a census with the BPF iterator gives the snapshots one without it gives")
{
	KernelFeatures features = probeKernelFeatures();
	REQUIRE(features.bpfSocketIterator);
	std::mt19937 rng(std::random_device{}());
	for (Family family : {Family::V4, Family::V6, Family::Mapped}) {
		for (bool options : {false, true}) {
			CAPTURE(familyName(family));
			CAPTURE(options);
			Namespace ns;
			UniqueFd listener = listenOn(family, true);
			UniqueFd client = connectTo(family, portOf(listener.get()), {});
			UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
			REQUIRE(server);
			int fd = server.get();
			if (options) {
				randomOptions(fd, rng);
				// Nagle and cork off, so that the exchanges below are
				// sent at once.
				setInt(fd, SOL_TCP, TCP_CORK, 0);
				setInt(fd, SOL_TCP, TCP_NODELAY, 1);
			}
			exchange(client.get(), fd, 1000);
			exchange(fd, client.get(), 500);
			waitQuiet(fd);
			waitQuiet(client.get());

			Result<ConnectionSnapshot> direct = snapshot(fd);
			REQUIRE_MESSAGE(direct.ok(), direct.error().message());
			REQUIRE(release(fd, *direct).ok());
			waitQuiet(fd);

			FlowId flow = flowOf(fd);
			SnapshotOptions withCensus;
			withCensus.features = &features;
			for (bool bpf : {true, false}) {
				CAPTURE(bpf);
				CensusOptions how;
				how.socketIterator = bpf;
				Result<SocketCensus> census = SocketCensus::take(std::span<const FlowId>(&flow, 1), how);
				REQUIRE_MESSAGE(census.ok(), census.error().message());
				CHECK(census->iterated() == bpf);
				const CensusEntry *entry = census->find(cookieOf(fd));
				REQUIRE(entry != nullptr);
				REQUIRE(entry->iterated.has_value() == bpf);
				if (bpf)
					CHECK(entry->iterated->known == (1u << kSocketFactCount) - 1 -
					                                        (family == Family::V4 ? 1u << static_cast<int>(SocketFact::V6Only) : 0));

				withCensus.census = &*census;
				Result<ConnectionSnapshot> s = snapshot(fd, withCensus);
				REQUIRE_MESSAGE(s.ok(), s.error().message());
				checkSame(*s, *direct);
				REQUIRE(release(fd, *s).ok());
				waitQuiet(fd);
			}

			// Still one connection, in order, both ways.
			exchange(client.get(), fd, 300);
			exchange(fd, client.get(), 300);
		}
	}
}

TEST_CASE("urgent data is refused through a BPF census too")
{
	Namespace ns;
	UniqueFd listener = listenOn(Family::V4, false);
	UniqueFd client = connectTo(Family::V4, portOf(listener.get()), {});
	UniqueFd server(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
	REQUIRE(server);
	char c = '!';
	REQUIRE(::send(client.get(), &c, 1, MSG_OOB | MSG_NOSIGNAL) == 1);
	waitUrgent(server.get());
	waitQuiet(client.get());

	FlowId flow = flowOf(server.get());
	Result<SocketCensus> census = SocketCensus::take(std::span<const FlowId>(&flow, 1));
	REQUIRE_MESSAGE(census.ok(), census.error().message());
	REQUIRE(census->iterated());
	const CensusEntry *entry = census->find(cookieOf(server.get()));
	REQUIRE(entry != nullptr);
	REQUIRE(entry->iterated.has_value());
	CHECK(entry->iterated->get(SocketFact::UrgentData) != 0);
	SnapshotOptions withCensus;
	withCensus.census = &*census;
	Result<ConnectionSnapshot> s = snapshot(server.get(), withCensus);
	REQUIRE_FALSE(s.ok());
	CHECK(s.error().what.find("urgent data") != std::string::npos);
	// Refused before repair mode: the urgent byte is still there to read.
	char got = 0;
	CHECK(::recv(server.get(), &got, 1, MSG_OOB) == 1);
	CHECK(got == '!');
}

TEST_CASE("without CAP_BPF and CAP_SYS_ADMIN the iterator does not load, and says why")
{
	// Capabilities belong to a thread: this one drops them, the test's
	// other threads keep theirs.
	std::optional<Result<SocketIterator>> loaded;
	std::thread worker([&] {
		__user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
		__user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
		REQUIRE(::syscall(SYS_capget, &header, data) == 0);
		for (int cap : {CAP_SYS_ADMIN, CAP_BPF, CAP_PERFMON}) {
			data[CAP_TO_INDEX(cap)].effective &= ~CAP_TO_MASK(cap);
			data[CAP_TO_INDEX(cap)].permitted &= ~CAP_TO_MASK(cap);
		}
		REQUIRE(::syscall(SYS_capset, &header, data) == 0);
		loaded.emplace(SocketIterator::load());
	});
	worker.join();
	REQUIRE(loaded.has_value());
	REQUIRE_FALSE(loaded->ok());
	CHECK(loaded->error().code == EPERM);
	CHECK(loaded->error().what.find("CAP_BPF") != std::string::npos);
}
