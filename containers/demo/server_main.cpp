// ferry-demo-server: streams the demo pattern to every client and verifies
// what each client streams back. Migration-aware (docs/workloads.md): it
// hands over at a safe point on `prepare`, and a new process started with
// LISTEN_FDS and FERRY_MANIFEST carries on the old one's streams.
//
// One thread, one epoll loop, non-blocking sockets. Between two iterations
// of the loop no stream byte is held in memory, so every iteration boundary
// is a safe point: the state is each connection's (seed, sent, received).
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "base/flow.h"
#include "base/log.h"
#include "handoff_channel.h"
#include "handoff_state.h"
#include "manifest.h"
#include "process_setup.h"
#include "stream_session.h"

namespace ferry::demo {

namespace {

FERRY_LOG_CATEGORY(logDemo, "demo")

constexpr const char *kUsage = R"(usage: ferry-demo-server [--listen ADDRESS:PORT] [options]

Streams sequence-numbered, checksummed data to every client of
ferry-demo-client and verifies the data each client streams back.

  --listen ADDRESS:PORT  where to listen: 198.51.100.10:7000, [2001:db8::10]:0
                         (port 0 picks one; the address is printed). Not
                         needed when listening sockets are inherited.
  --rate BYTES           bytes per second per connection, like 200k or 1M;
                         0 = as fast as possible (default 200k)
  --name NAME            name given to ferry in the handoff hello (default demo)
  --log SPEC             log levels, e.g. "debug" or "demo=debug,info"
  --help                 this text

Environment:
  FERRY_HANDOFF_SOCKET   the ferry handoff socket: on `prepare` the server
                         stops at a safe point and hands its stream offsets
                         over in `ready`; `resume` carries on, `exit` exits
                         without closing the connections.
  LISTEN_FDS, LISTEN_FDNAMES, LISTEN_PID, FERRY_MANIFEST
                         inherited sockets (systemd convention plus ferry's
                         manifest): listeners keep accepting, connections
                         continue from the offsets in the manifest's state.

Output: one JSON line per event on stdout: "listening" at start, "status"
on SIGUSR1, "final" at exit. SIGTERM or SIGINT ends the server. Exit status
0, or 1 after any verification or protocol error, 2 on a start-up error.
)";

constexpr size_t kChunk = 256 * 1024;       // per connection per event, for fairness
constexpr int kTickMs = 10;                 // token refill period when rate-limited
constexpr int kMaxEvents = 256;
constexpr int kAcceptBurst = 64;

enum class Tag : uint32_t { Listener = 1, Connection, Signal, Timer, Handoff, Streams };

uint64_t epollKey(Tag tag, int fd)
{
	return (static_cast<uint64_t>(tag) << 32) | static_cast<uint32_t>(fd);
}

struct Options {
	std::optional<Endpoint> listen;
	uint64_t rate = 200 * 1024;
	std::string name = "demo";
};

Result<Endpoint> localEndpoint(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	if (::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) < 0)
		return errnoError("getsockname");
	return Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), len);
}

Result<Endpoint> remoteEndpoint(int fd)
{
	sockaddr_storage ss{};
	socklen_t len = sizeof(ss);
	if (::getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &len) < 0)
		return errnoError("getpeername");
	return Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), len);
}

Result<FlowId> flowOf(int fd)
{
	FlowId flow;
	FERRY_TRY_ASSIGN(flow.local, localEndpoint(fd));
	FERRY_TRY_ASSIGN(flow.remote, remoteEndpoint(fd));
	return flow;
}

int getIntOption(int fd, int level, int name)
{
	int value = 0;
	socklen_t len = sizeof(value);
	if (::getsockopt(fd, level, name, &value, &len) < 0)
		return -1;
	return value;
}

Status makeNonBlocking(int fd)
{
	int flags = ::fcntl(fd, F_GETFL);
	if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return errnoError("fcntl(O_NONBLOCK)");
	if (::fcntl(fd, F_SETFD, FD_CLOEXEC) < 0)
		return errnoError("fcntl(FD_CLOEXEC)");
	return {};
}

Result<UniqueFd> openListener(const Endpoint &at)
{
	UniqueFd fd(::socket(at.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!fd)
		return errnoError("socket");
	int one = 1;
	::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (at.family == AF_INET6)
		::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	socklen_t len = 0;
	sockaddr_storage ss = at.toSockaddr(len);
	if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0)
		return errnoError("bind").at("address", at.toString());
	if (::listen(fd.get(), SOMAXCONN) < 0)
		return errnoError("listen").at("address", at.toString());
	return fd;
}

class DemoServer {
public:
	explicit DemoServer(Options options) : options_(std::move(options)) {}

	Status start();
	// Runs until SIGTERM/SIGINT or `exit`; returns the exit status.
	int run();

private:
	// One client connection: waiting for its hello, then a session.
	struct Connection {
		FlowId flow;
		UniqueFd pendingFd; // until the hello is read
		std::optional<StreamSession> session;
		TokenBucket bucket;
		bool writeInterest = false;

		int fd() const { return session ? session->fd() : pendingFd.get(); }
	};

	Status adoptInherited(const SocketActivation &activation);
	Status addListener(UniqueFd fd, const Endpoint &at);
	// Listeners and connections go in streams_, everything else in control_.
	Status watch(int fd, Tag tag, uint32_t events, int op = EPOLL_CTL_ADD);
	void unwatch(int fd, Tag tag);
	void dispatchStreams();
	uint32_t connectionEvents(const Connection &c) const;

	void onListener(int fd);
	void onConnection(int fd, uint32_t events);
	void onHello(Connection &c);
	void pumpSend(Connection &c);
	void setWriteInterest(Connection &c, bool on);
	void onTick();
	void onSignal();
	void onHandoff();
	void prepare(const std::string &migration);
	void resume();
	// Closes the connection (EPOLL_CTL_DEL first: with the socket shared
	// across processes during a handoff, close() alone would leave it in
	// our epoll set).
	void drop(int fd);
	void recordError(const Error &error);

	void printStatus(const char *event);
	int exitStatus() const { return errors_ == 0 ? 0 : 1; }

	Options options_;
	// Two epoll sets: control_ (signals, timer, handoff socket, and streams_
	// itself) and streams_ (listeners and connections). Taking streams_ out
	// of control_ is how prepare() stops touching every socket at once: one
	// syscall for ten thousand connections, inside the migration's blackout.
	UniqueFd control_;
	UniqueFd streams_;
	UniqueFd signals_;
	UniqueFd timer_;
	std::optional<HandoffChannel> handoff_;
	std::vector<std::pair<UniqueFd, Endpoint>> listeners_;
	std::unordered_map<int, std::unique_ptr<Connection>> connections_;
	// The connections that stream (not idle, hello read): the only ones the
	// rate timer needs to visit, so ten thousand idle ones cost nothing.
	std::unordered_set<int> streaming_;
	bool paused_ = false;
	bool stopping_ = false;
	bool exitRequested_ = false;

	uint64_t accepted_ = 0;
	uint64_t adopted_ = 0;
	uint64_t closed_ = 0;
	uint64_t resets_ = 0;
	uint64_t errors_ = 0;
	std::string firstError_;
	uint64_t bytesReceived_ = 0; // verified by this process
	uint64_t bytesSent_ = 0;     // written by this process
	uint64_t inheritedReceived_ = 0;
	uint64_t inheritedSent_ = 0;
	uint64_t handoffs_ = 0;
};

Status DemoServer::watch(int fd, Tag tag, uint32_t events, int op)
{
	epoll_event ev{};
	ev.events = events;
	ev.data.u64 = epollKey(tag, fd);
	int set = tag == Tag::Listener || tag == Tag::Connection ? streams_.get() : control_.get();
	if (::epoll_ctl(set, op, fd, &ev) < 0)
		return errnoError("epoll_ctl").at("fd", std::to_string(fd));
	return {};
}

void DemoServer::unwatch(int fd, Tag tag)
{
	int set = tag == Tag::Listener || tag == Tag::Connection ? streams_.get() : control_.get();
	::epoll_ctl(set, EPOLL_CTL_DEL, fd, nullptr);
}

uint32_t DemoServer::connectionEvents(const Connection &c) const
{
	// Until the hello is complete the server only peeks at it; edge
	// triggering keeps a partial hello from waking the loop forever.
	if (!c.session)
		return EPOLLIN | EPOLLRDHUP | EPOLLET;
	return EPOLLIN | EPOLLRDHUP | (c.writeInterest ? EPOLLOUT : 0u);
}

Status DemoServer::start()
{
	control_.reset(::epoll_create1(EPOLL_CLOEXEC));
	streams_.reset(::epoll_create1(EPOLL_CLOEXEC));
	if (!control_ || !streams_)
		return errnoError("epoll_create1");
	FERRY_TRY(watch(streams_.get(), Tag::Streams, EPOLLIN));
	FERRY_TRY_ASSIGN(signals_, openSignalFd());
	FERRY_TRY(watch(signals_.get(), Tag::Signal, EPOLLIN));
	if (options_.rate != 0) {
		timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
		if (!timer_)
			return errnoError("timerfd_create");
		itimerspec spec{};
		spec.it_interval.tv_nsec = kTickMs * 1000000L;
		spec.it_value = spec.it_interval;
		if (::timerfd_settime(timer_.get(), 0, &spec, nullptr) < 0)
			return errnoError("timerfd_settime");
		FERRY_TRY(watch(timer_.get(), Tag::Timer, EPOLLIN));
	}

	FERRY_TRY_ASSIGN(std::optional<SocketActivation> activation,
		socketActivation(std::getenv("LISTEN_PID"), std::getenv("LISTEN_FDS"),
			std::getenv("LISTEN_FDNAMES"), static_cast<long>(::getpid())));
	if (activation)
		FERRY_TRY(adoptInherited(*activation));

	if (listeners_.empty()) {
		if (!options_.listen)
			return makeError("nothing to listen on: give --listen or inherit a listening socket", EINVAL);
		FERRY_TRY_ASSIGN(UniqueFd fd, openListener(*options_.listen));
		FERRY_TRY_ASSIGN(Endpoint bound, localEndpoint(fd.get()));
		FERRY_TRY(addListener(std::move(fd), bound));
	} else if (options_.listen) {
		FERRY_LOG(logDemo, Info) << "listening sockets inherited; --listen ignored"
			<< kv("listen", options_.listen->toString());
	}
	for (const auto &[fd, at] : listeners_)
		std::printf("{\"event\":\"listening\",\"address\":\"%s\",\"pid\":%d}\n", at.toString().c_str(), ::getpid());
	std::fflush(stdout);

	if (const char *path = std::getenv("FERRY_HANDOFF_SOCKET"); path && *path) {
		Result<HandoffChannel> channel = HandoffChannel::connect(path, options_.name);
		if (!channel.ok())
			return std::move(channel).error().at("phase", "handoff-hello");
		handoff_.emplace(std::move(channel).value());
		FERRY_TRY(watch(handoff_->fd(), Tag::Handoff, EPOLLIN));
	}
	return {};
}

Status DemoServer::addListener(UniqueFd fd, const Endpoint &at)
{
	FERRY_TRY(watch(fd.get(), Tag::Listener, EPOLLIN));
	listeners_.emplace_back(std::move(fd), at);
	return {};
}

Status DemoServer::adoptInherited(const SocketActivation &activation)
{
	const char *manifestPath = std::getenv("FERRY_MANIFEST");
	if (!manifestPath || !*manifestPath)
		return makeError("LISTEN_FDS is set but FERRY_MANIFEST is not: without the state blob the "
				"inherited streams cannot be continued", EINVAL);
	FERRY_TRY_ASSIGN(Manifest manifest, readManifest(manifestPath));
	FERRY_TRY(checkManifest(manifest, activation));
	Result<HandoffState> decoded = decodeHandoffState(manifest.state);
	if (!decoded.ok())
		return std::move(decoded).error().at("manifest", manifestPath);
	HandoffState state = std::move(decoded).value();
	// The variables describe fds of this process only; a child must not
	// take them for its own (the systemd convention).
	::unsetenv("LISTEN_PID");
	::unsetenv("LISTEN_FDS");
	::unsetenv("LISTEN_FDNAMES");
	::unsetenv("FERRY_MANIFEST");

	std::unordered_map<std::string, const ConnectionState *> byFlow;
	for (const ConnectionState &c : state.connections)
		byFlow.emplace(flowKey(c.flow), &c);
	std::unordered_map<int, const ManifestConnection *> byFd;
	for (const ManifestConnection &m : manifest.connections)
		byFd.emplace(m.fd, &m);

	Clock::time_point now = Clock::now();
	for (int fd = kListenFdsStart; fd < kListenFdsStart + activation.count; fd++) {
		const ManifestConnection &entry = *byFd.at(fd);
		auto fail = [&](Error e) { return std::move(e).at("fd", std::to_string(fd)).at("name", entry.name); };
		UniqueFd owned(fd);
		if (getIntOption(fd, SOL_SOCKET, SO_TYPE) != SOCK_STREAM ||
		    (getIntOption(fd, SOL_SOCKET, SO_DOMAIN) != AF_INET && getIntOption(fd, SOL_SOCKET, SO_DOMAIN) != AF_INET6))
			return fail(makeError("inherited fd is not a TCP socket", ENOTSOCK));
		if (Status s = makeNonBlocking(fd); !s.ok())
			return fail(std::move(s).error());
		Result<Endpoint> local = localEndpoint(fd);
		if (!local.ok())
			return fail(std::move(local).error());
		if (canonicalEndpoint(*local) != canonicalEndpoint(entry.local))
			return fail(makeError("manifest says local " + entry.local.toString() + " but the socket is bound to " +
					local->toString(), EINVAL));

		if (getIntOption(fd, SOL_SOCKET, SO_ACCEPTCONN) == 1) {
			if (!entry.isListener())
				return fail(makeError("inherited socket is listening but the manifest says " + entry.state, EINVAL));
			FERRY_TRY(addListener(std::move(owned), *local));
			continue;
		}
		Result<Endpoint> remote = remoteEndpoint(fd);
		if (!remote.ok())
			return fail(std::move(remote).error());
		if (!entry.remote || canonicalEndpoint(*remote) != canonicalEndpoint(*entry.remote))
			return fail(makeError("manifest does not name the socket's peer " + remote->toString(), EINVAL));

		auto c = std::make_unique<Connection>(Connection{FlowId{*local, *remote}, {}, {}, TokenBucket(options_.rate, now), false});
		FlowId flow{*local, *remote};
		std::string key = flowKey(flow);
		auto it = byFlow.find(key);
		if (it != byFlow.end() && it->second->seed) {
			const ConnectionState &s = *it->second;
			c->session.emplace(std::move(owned), Direction::ServerToClient, Hello{*s.seed, s.idle},
				StreamSession::Position{s.sent, s.received});
			c->writeInterest = options_.rate == 0 && !s.idle;
			if (!s.idle)
				streaming_.insert(fd);
			inheritedSent_ += s.sent;
			inheritedReceived_ += s.received;
			adopted_++;
		} else {
			// The old process never read this connection's hello (or never
			// accepted it): it starts from the beginning here.
			FERRY_LOG(logDemo, Info) << "inherited connection has no stream yet" << kv("flow", flow.toString());
			c->pendingFd = std::move(owned);
			accepted_++;
		}
		if (it != byFlow.end())
			byFlow.erase(it);
		int cfd = c->fd();
		FERRY_TRY(watch(cfd, Tag::Connection, connectionEvents(*c)));
		Connection &ref = *c;
		connections_.emplace(cfd, std::move(c));
		if (!ref.session)
			onHello(ref); // the hello may be queued already; edge-triggered epoll would not say so
	}
	for (const auto &[key, s] : byFlow) {
		if (s->seed)
			recordError(makeError("a connection in the state blob was not inherited: its stream is lost", ENOENT)
				.at("flow", s->flow.toString()));
	}
	FERRY_LOG(logDemo, Info) << "adopted inherited sockets" << kv("migration", manifest.migration)
		<< kv("connections", adopted_) << kv("listeners", listeners_.size());
	return {};
}

void DemoServer::recordError(const Error &error)
{
	errors_++;
	if (firstError_.empty())
		firstError_ = error.message();
	FERRY_LOG(logDemo, Error) << error.message();
}

void DemoServer::onListener(int fd)
{
	for (int i = 0; i < kAcceptBurst; i++) {
		UniqueFd conn(::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
		if (!conn) {
			if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
				FERRY_LOG(logDemo, Warn) << "accept failed" << kv("errno", std::strerror(errno));
			}
			return;
		}
		Result<FlowId> flow = flowOf(conn.get());
		if (!flow.ok())
			continue; // reset before we looked at it
		int one = 1;
		::setsockopt(conn.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		auto c = std::make_unique<Connection>(Connection{*flow, std::move(conn), {}, TokenBucket(options_.rate, Clock::now()), false});
		int cfd = c->fd();
		if (Status s = watch(cfd, Tag::Connection, connectionEvents(*c)); !s.ok()) {
			FERRY_LOG(logDemo, Warn) << s.error().message();
			continue;
		}
		accepted_++;
		Connection &ref = *c;
		connections_.emplace(cfd, std::move(c));
		onHello(ref);
	}
}

void DemoServer::onHello(Connection &c)
{
	std::array<uint8_t, kHelloSize> bytes;
	int fd = c.pendingFd.get();
	// Peek until the whole hello is there: consuming part of it would put
	// stream state in memory that a handoff could not carry.
	ssize_t n = ::recv(fd, bytes.data(), bytes.size(), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (n <= 0) {
		if (n < 0)
			resets_++;
		drop(fd); // gone before it said hello
		return;
	}
	if (static_cast<size_t>(n) < bytes.size())
		return;
	n = ::recv(fd, bytes.data(), bytes.size(), MSG_DONTWAIT);
	Result<Hello> hello = decodeHello(bytes);
	if (n != static_cast<ssize_t>(bytes.size()) || !hello.ok()) {
		recordError(hello.ok() ? makeError("hello vanished while reading it", EIO) : hello.error()
			.at("flow", c.flow.toString()));
		drop(fd);
		return;
	}
	c.session.emplace(std::move(c.pendingFd), Direction::ServerToClient, *hello, StreamSession::Position{});
	c.writeInterest = options_.rate == 0 && !hello->idle;
	if (!hello->idle)
		streaming_.insert(fd);
	if (Status s = watch(fd, Tag::Connection, connectionEvents(c), EPOLL_CTL_MOD); !s.ok())
		recordError(s.error());
	FERRY_LOG(logDemo, Debug) << "client said hello" << kv("flow", c.flow.toString()) << kv("seed", hello->seed)
		<< kv("idle", hello->idle);
	// Data may have followed the hello in the same segment: the switch to
	// level-triggered epoll reports it.
}

void DemoServer::setWriteInterest(Connection &c, bool on)
{
	if (c.writeInterest == on)
		return;
	c.writeInterest = on;
	if (Status s = watch(c.fd(), Tag::Connection, connectionEvents(c), EPOLL_CTL_MOD); !s.ok())
		recordError(s.error());
}

void DemoServer::pumpSend(Connection &c)
{
	if (!c.session || c.session->hello().idle)
		return;
	uint64_t budget = std::min<uint64_t>(c.bucket.available(), kChunk);
	if (budget == 0) {
		setWriteInterest(c, false);
		return;
	}
	Result<StreamSession::SendResult> r = c.session->send(budget);
	if (!r.ok()) {
		// The peer went away (reset): the client reports that; the server
		// only counts it.
		resets_++;
		FERRY_LOG(logDemo, Info) << "connection failed while sending" << kv("flow", c.flow.toString())
			<< kv("error", r.error().message());
		drop(c.fd());
		return;
	}
	c.bucket.spend(r->bytes);
	bytesSent_ += r->bytes;
	if (!c.bucket.unlimited())
		setWriteInterest(c, r->wouldBlock);
}

void DemoServer::onConnection(int fd, uint32_t events)
{
	auto it = connections_.find(fd);
	if (it == connections_.end())
		return;
	Connection &c = *it->second;
	if (!c.session) {
		onHello(c);
		return;
	}
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
		Result<StreamSession::ReceiveResult> r = c.session->receive(kChunk);
		if (!r.ok()) {
			if (r.error().code == EBADMSG || r.error().code == EPROTO) {
				recordError(r.error().at("flow", c.flow.toString()));
			} else {
				resets_++;
				FERRY_LOG(logDemo, Info) << "connection failed" << kv("flow", c.flow.toString())
					<< kv("error", r.error().message());
			}
			drop(fd);
			return;
		}
		bytesReceived_ += r->bytes;
		if (r->endOfStream) {
			// The client finished: it has sent everything and verified what it
			// wanted. Close our side too (everything was read, so no RST).
			FERRY_LOG(logDemo, Debug) << "client finished" << kv("flow", c.flow.toString())
				<< kv("received", c.session->received()) << kv("sent", c.session->sent());
			drop(fd);
			return;
		}
	}
	if (events & EPOLLOUT)
		pumpSend(c);
}

void DemoServer::drop(int fd)
{
	auto it = connections_.find(fd);
	if (it == connections_.end())
		return;
	unwatch(fd, Tag::Connection);
	closed_++;
	streaming_.erase(fd);
	connections_.erase(it); // closes the socket
}

void DemoServer::onTick()
{
	uint64_t expirations = 0;
	while (::read(timer_.get(), &expirations, sizeof(expirations)) > 0) {
	}
	if (paused_)
		return;
	Clock::time_point now = Clock::now();
	// pumpSend may drop a connection, so walk a copy of the keys.
	std::vector<int> fds;
	fds.reserve(streaming_.size());
	for (int fd : streaming_) {
		Connection &c = *connections_.at(fd);
		c.bucket.refill(now);
		if (!c.writeInterest)
			fds.push_back(fd);
	}
	for (int fd : fds) {
		auto it = connections_.find(fd);
		if (it != connections_.end())
			pumpSend(*it->second);
	}
}

void DemoServer::onSignal()
{
	signalfd_siginfo info{};
	while (::read(signals_.get(), &info, sizeof(info)) == sizeof(info)) {
		if (info.ssi_signo == SIGUSR1)
			printStatus("status");
		else
			stopping_ = true;
	}
}

void DemoServer::prepare(const std::string &migration)
{
	if (paused_) {
		FERRY_LOG(logDemo, Warn) << "prepare while already prepared" << kv("migration", migration);
	}
	paused_ = true;
	unwatch(streams_.get(), Tag::Streams);
	HandoffState state;
	for (const auto &[fd, at] : listeners_)
		state.listeners.push_back(at);
	state.connections.reserve(connections_.size());
	for (const auto &[fd, c] : connections_) {
		ConnectionState s;
		s.flow = c->flow;
		if (c->session) {
			s.seed = c->session->hello().seed;
			s.idle = c->session->hello().idle;
			s.sent = c->session->sent();
			s.received = c->session->received();
		}
		state.connections.push_back(std::move(s));
	}
	std::string blob = encodeHandoffState(state);
	FERRY_LOG(logDemo, Info) << "prepared: sockets left alone" << kv("migration", migration)
		<< kv("connections", state.connections.size()) << kv("blob_bytes", blob.size());
	if (Status s = handoff_->sendReady(blob); !s.ok()) {
		FERRY_LOG(logDemo, Error) << "could not answer prepare; waiting for ferry to abort"
			<< kv("error", s.error().message());
	}
	handoffs_++;
}

void DemoServer::resume()
{
	if (!paused_)
		return;
	paused_ = false;
	Clock::time_point now = Clock::now();
	for (auto &[fd, c] : connections_)
		c->bucket = TokenBucket(options_.rate, now); // no credit for the pause
	// Readiness that arrived during the pause is still queued in streams_,
	// edge-triggered hellos included: nothing was lost by not looking.
	if (Status s = watch(streams_.get(), Tag::Streams, EPOLLIN); !s.ok())
		recordError(s.error());
	FERRY_LOG(logDemo, Info) << "resumed: the migration was aborted";
}

void DemoServer::onHandoff()
{
	Result<std::optional<HandoffRequest>> r = handoff_->receive();
	if (!r.ok()) {
		FERRY_LOG(logDemo, Warn) << "bad handoff request ignored" << kv("error", r.error().message());
		return;
	}
	if (!*r) {
		// ferry went away. If it left us prepared, nobody will say resume or
		// exit: carrying on is the only way the clients keep their streams.
		FERRY_LOG(logDemo, Warn) << "handoff socket closed by ferry" << kv("prepared", paused_);
		unwatch(handoff_->fd(), Tag::Handoff);
		handoff_.reset();
		resume();
		return;
	}
	switch ((*r)->kind) {
	case HandoffRequest::Kind::Prepare:
		prepare((*r)->migration);
		break;
	case HandoffRequest::Kind::Resume:
		resume();
		break;
	case HandoffRequest::Kind::Exit:
		if (!paused_) {
			FERRY_LOG(logDemo, Warn) << "exit without prepare ignored";
			break;
		}
		exitRequested_ = true;
		break;
	}
}

void DemoServer::printStatus(const char *event)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	w.StartObject();
	w.Key("event");
	w.String(event);
	w.Key("pid");
	w.Int(::getpid());
	w.Key("connections");
	w.Uint64(connections_.size());
	w.Key("accepted");
	w.Uint64(accepted_);
	w.Key("adopted");
	w.Uint64(adopted_);
	w.Key("closed");
	w.Uint64(closed_);
	w.Key("resets");
	w.Uint64(resets_);
	w.Key("bytesReceivedVerified");
	w.Uint64(bytesReceived_);
	w.Key("bytesSent");
	w.Uint64(bytesSent_);
	w.Key("inheritedReceivedVerified");
	w.Uint64(inheritedReceived_);
	w.Key("inheritedSent");
	w.Uint64(inheritedSent_);
	w.Key("handoffs");
	w.Uint64(handoffs_);
	w.Key("prepared");
	w.Bool(paused_);
	w.Key("errors");
	w.Uint64(errors_);
	if (!firstError_.empty()) {
		w.Key("firstError");
		w.String(firstError_.c_str());
	}
	w.EndObject();
	std::printf("%s\n", buffer.GetString());
	std::fflush(stdout);
}

int DemoServer::run()
{
	epoll_event events[kMaxEvents];
	while (!stopping_ && !exitRequested_) {
		int n = ::epoll_wait(control_.get(), events, kMaxEvents, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			recordError(errnoError("epoll_wait"));
			break;
		}
		for (int i = 0; i < n && !exitRequested_; i++) {
			auto tag = static_cast<Tag>(events[i].data.u64 >> 32);
			switch (tag) {
			case Tag::Streams:
				// prepare() earlier in this batch means: touch nothing more.
				if (!paused_)
					dispatchStreams();
				break;
			case Tag::Listener:
			case Tag::Connection:
				break; // only in streams_
			case Tag::Signal:
				onSignal();
				break;
			case Tag::Timer:
				onTick();
				break;
			case Tag::Handoff:
				if (handoff_)
					onHandoff();
				break;
			}
		}
	}
	printStatus("final");
	if (exitRequested_ || paused_) {
		// The sockets belong to the new process now (or are in repair mode
		// and must go silently): no close, no shutdown, no destructors.
		::_exit(exitStatus());
	}
	return exitStatus();
}

void DemoServer::dispatchStreams()
{
	epoll_event events[kMaxEvents];
	int n = ::epoll_wait(streams_.get(), events, kMaxEvents, 0);
	for (int i = 0; i < n; i++) {
		auto tag = static_cast<Tag>(events[i].data.u64 >> 32);
		int fd = static_cast<int>(events[i].data.u64 & 0xffffffffu);
		if (tag == Tag::Listener)
			onListener(fd);
		else
			onConnection(fd, events[i].events);
	}
}

Result<Options> parseOptions(int argc, char **argv)
{
	Options o;
	for (int i = 1; i < argc; i++) {
		std::string_view arg = argv[i];
		auto value = [&]() -> Result<std::string_view> {
			if (i + 1 >= argc)
				return makeError(std::string(arg) + " needs a value", EINVAL);
			return std::string_view(argv[++i]);
		};
		if (arg == "--help" || arg == "-h") {
			std::fputs(kUsage, stdout);
			std::exit(0);
		} else if (arg == "--listen") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			FERRY_TRY_ASSIGN(o.listen, Endpoint::parse(v));
		} else if (arg == "--rate") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			FERRY_TRY_ASSIGN(o.rate, parseByteCount(v));
		} else if (arg == "--name") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			o.name = std::string(v);
		} else if (arg == "--log") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			if (!log::configure(v))
				return makeError("--log '" + std::string(v) + "' is not a log level spec", EINVAL);
		} else {
			return makeError("unknown argument '" + std::string(arg) + "' (see --help)", EINVAL);
		}
	}
	return o;
}

} // namespace

} // namespace ferry::demo

int main(int argc, char **argv)
{
	using namespace ferry::demo;
	ferry::Result<Options> options = parseOptions(argc, argv);
	if (!options.ok()) {
		std::fprintf(stderr, "ferry-demo-server: %s\n", options.error().message().c_str());
		return 2;
	}
	raiseFdLimit();
	DemoServer server(std::move(options).value());
	if (ferry::Status s = server.start(); !s.ok()) {
		std::fprintf(stderr, "ferry-demo-server: %s\n", s.error().message().c_str());
		return 2;
	}
	return server.run();
}
