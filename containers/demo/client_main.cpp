// ferry-demo-client: opens N connections to ferry-demo-server, streams the
// client's direction on each and verifies the server's, and measures the
// longest stall each connection saw. A migration of the server must show
// up as nothing worse than a stall: any lost, duplicated or reordered byte,
// a reset or an early end of stream is an error.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include "base/flow.h"
#include "base/log.h"
#include "process_setup.h"
#include "stream_session.h"

namespace ferry::demo {

namespace {

FERRY_LOG_CATEGORY(logDemo, "demo")

constexpr const char *kUsage = R"(usage: ferry-demo-client --connect ADDRESS:PORT [options]

Opens connections to ferry-demo-server, streams sequence-numbered,
checksummed data on each while verifying the server's stream, and prints a
JSON report at the end.

  --connect ADDRESS:PORT  the server: 198.51.100.10:7000, [2001:db8::10]:7000
  --connections N         connections to open (default 1)
  --duration SECONDS      run this long (fractions allowed); 0 = until
                          SIGTERM or SIGINT (default 0)
  --rate BYTES            bytes per second per connection that the client
                          sends, like 200k or 1M; 0 = as fast as possible
                          (default 200k). The server's rate is its own.
  --idle                  hold the connections open without data (neither
                          side streams); they must still stay alive
  --seed N                base seed of the streams (default: random)
  --drain-timeout SECONDS how long to wait at the end for the server to
                          finish the streams (default 5)
  --totals-only           report totals without the per-connection list
  --log SPEC              log levels, e.g. "debug" or "demo=debug,info"
  --help                  this text

At the end (duration over, SIGTERM or SIGINT) the client stops sending,
shuts its side down, verifies the rest of the server's stream up to its end
and prints {"event":"report",...} on stdout: per connection the bytes sent
and verified, the longest stall (the longest gap between two receptions
while the stream should flow) and any error; then totals. SIGUSR1 prints
the same as {"event":"progress",...} without stopping. Exit status 0, 1
after any verification error, reset or unexpected end of stream, 2 when the
connections could not be opened.
)";

constexpr size_t kChunk = 256 * 1024;
constexpr int kMaxEvents = 256;
constexpr int kConnectTimeoutMs = 5000;

struct Options {
	Endpoint server;
	bool haveServer = false;
	unsigned connections = 1;
	double durationSeconds = 0;
	uint64_t rate = 200 * 1024;
	bool idle = false;
	std::optional<uint64_t> seed;
	double drainSeconds = 5;
	bool totalsOnly = false;
};

enum class Phase { Open, Draining, Closed, Failed };

const char *phaseName(Phase p)
{
	switch (p) {
	case Phase::Open:
		return "open";
	case Phase::Draining:
		return "draining";
	case Phase::Closed:
		return "closed";
	case Phase::Failed:
		return "failed";
	}
	return "?";
}

struct Connection {
	unsigned id = 0;
	FlowId flow;
	std::optional<StreamSession> session;
	TokenBucket bucket;
	bool writeInterest = false;
	Phase phase = Phase::Open;
	std::string error;
	Clock::time_point lastReceive;
	Clock::duration longestStall{};
};

uint64_t mixSeed(uint64_t base, uint64_t index)
{
	uint64_t z = base + (index + 1) * 0x9E3779B97F4A7C15ull;
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

double toMs(Clock::duration d)
{
	return std::chrono::duration<double, std::milli>(d).count();
}

Result<UniqueFd> connectTo(const Endpoint &server)
{
	UniqueFd fd(::socket(server.family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
	if (!fd)
		return errnoError("socket");
	socklen_t len = 0;
	sockaddr_storage ss = server.toSockaddr(len);
	if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0) {
		if (errno != EINPROGRESS)
			return errnoError("connect").at("server", server.toString());
		pollfd p{fd.get(), POLLOUT, 0};
		int n;
		do
			n = ::poll(&p, 1, kConnectTimeoutMs);
		while (n < 0 && errno == EINTR);
		if (n == 0)
			return makeError("connect timed out", ETIMEDOUT).at("server", server.toString());
		int err = 0;
		socklen_t errLen = sizeof(err);
		::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &errLen);
		if (err != 0)
			return errnoError(err, "connect").at("server", server.toString());
	}
	int one = 1;
	::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	return fd;
}

Result<FlowId> flowOf(int fd)
{
	sockaddr_storage l{}, r{};
	socklen_t ll = sizeof(l), rl = sizeof(r);
	if (::getsockname(fd, reinterpret_cast<sockaddr *>(&l), &ll) < 0 ||
	    ::getpeername(fd, reinterpret_cast<sockaddr *>(&r), &rl) < 0)
		return errnoError("getsockname/getpeername");
	FlowId flow;
	FERRY_TRY_ASSIGN(flow.local, Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&l), ll));
	FERRY_TRY_ASSIGN(flow.remote, Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&r), rl));
	return flow;
}

class DemoClient {
public:
	explicit DemoClient(Options options) : options_(std::move(options)) {}

	Status start();
	int run();

private:
	Status watch(Connection &c, int op);
	void onConnection(Connection &c, uint32_t events);
	void pumpSend(Connection &c);
	void setWriteInterest(Connection &c, bool on);
	void onTick();
	void onSignal();
	void beginDrain();
	void fail(Connection &c, const std::string &why);
	void finish(Connection &c);
	bool allDone() const;
	void printReport(const char *event);

	Options options_;
	UniqueFd epoll_;
	UniqueFd signals_;
	UniqueFd timer_;
	std::vector<Connection> connections_;
	uint64_t baseSeed_ = 0;
	Clock::time_point started_;
	Clock::time_point drainStarted_;
	bool draining_ = false;
};

Status DemoClient::watch(Connection &c, int op)
{
	epoll_event ev{};
	ev.events = EPOLLIN | EPOLLRDHUP | (c.writeInterest ? EPOLLOUT : 0u);
	ev.data.u64 = c.id;
	if (::epoll_ctl(epoll_.get(), op, c.session->fd(), &ev) < 0)
		return errnoError("epoll_ctl").at("connection", std::to_string(c.id));
	return {};
}

Status DemoClient::start()
{
	epoll_.reset(::epoll_create1(EPOLL_CLOEXEC));
	if (!epoll_)
		return errnoError("epoll_create1");
	FERRY_TRY_ASSIGN(signals_, openSignalFd());
	epoll_event ev{};
	ev.events = EPOLLIN;
	ev.data.u64 = UINT64_MAX;
	if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, signals_.get(), &ev) < 0)
		return errnoError("epoll_ctl(signalfd)");
	timer_.reset(::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC));
	if (!timer_)
		return errnoError("timerfd_create");
	itimerspec spec{};
	// 10 ms keeps a rate-limited stream smooth; idle connections only need
	// the clock for the duration.
	spec.it_interval.tv_nsec = (options_.idle ? 100 : 10) * 1000000L;
	spec.it_value = spec.it_interval;
	if (::timerfd_settime(timer_.get(), 0, &spec, nullptr) < 0)
		return errnoError("timerfd_settime");
	ev.data.u64 = UINT64_MAX - 1;
	if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, timer_.get(), &ev) < 0)
		return errnoError("epoll_ctl(timerfd)");

	if (options_.seed) {
		baseSeed_ = *options_.seed;
	} else if (::getrandom(&baseSeed_, sizeof(baseSeed_), 0) != sizeof(baseSeed_)) {
		return errnoError("getrandom");
	}

	connections_.reserve(options_.connections);
	for (unsigned i = 0; i < options_.connections; i++) {
		Result<UniqueFd> fd = connectTo(options_.server);
		if (!fd.ok())
			return std::move(fd).error().at("connection", std::to_string(i));
		Hello hello{mixSeed(baseSeed_, i), options_.idle};
		auto bytes = encodeHello(hello);
		// A fresh socket's send buffer is empty: the hello always goes whole.
		if (::send(fd->get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(bytes.size()))
			return errnoError("send hello").at("connection", std::to_string(i));
		FERRY_TRY_ASSIGN(FlowId flow, flowOf(fd->get()));
		Clock::time_point now = Clock::now();
		Connection &c = connections_.emplace_back(Connection{i, flow, {}, TokenBucket(options_.rate, now), false,
			Phase::Open, {}, now, {}});
		c.session.emplace(std::move(fd).value(), Direction::ClientToServer, hello, StreamSession::Position{});
		c.writeInterest = options_.rate == 0 && !options_.idle;
		FERRY_TRY(watch(c, EPOLL_CTL_ADD));
	}
	started_ = Clock::now();
	for (Connection &c : connections_)
		c.lastReceive = started_;
	FERRY_LOG(logDemo, Info) << "connections open" << kv("count", connections_.size())
		<< kv("server", options_.server.toString()) << kv("seed", baseSeed_);
	return {};
}

void DemoClient::fail(Connection &c, const std::string &why)
{
	if (c.phase == Phase::Failed)
		return;
	c.phase = Phase::Failed;
	c.error = why;
	FERRY_LOG(logDemo, Error) << "connection failed" << kv("connection", c.id) << kv("flow", c.flow.toString())
		<< kv("error", why);
	::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.session->fd(), nullptr);
	c.session->releaseFd().reset();
}

void DemoClient::finish(Connection &c)
{
	c.phase = Phase::Closed;
	::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, c.session->fd(), nullptr);
	c.session->releaseFd().reset();
}

void DemoClient::setWriteInterest(Connection &c, bool on)
{
	if (c.writeInterest == on)
		return;
	c.writeInterest = on;
	if (Status s = watch(c, EPOLL_CTL_MOD); !s.ok())
		fail(c, s.error().message());
}

void DemoClient::pumpSend(Connection &c)
{
	if (c.phase != Phase::Open || options_.idle)
		return;
	uint64_t budget = std::min<uint64_t>(c.bucket.available(), kChunk);
	if (budget == 0) {
		setWriteInterest(c, false);
		return;
	}
	Result<StreamSession::SendResult> r = c.session->send(budget);
	if (!r.ok()) {
		fail(c, r.error().message());
		return;
	}
	c.bucket.spend(r->bytes);
	if (!c.bucket.unlimited())
		setWriteInterest(c, r->wouldBlock);
}

void DemoClient::onConnection(Connection &c, uint32_t events)
{
	if (c.phase != Phase::Open && c.phase != Phase::Draining)
		return;
	if (events & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP)) {
		Result<StreamSession::ReceiveResult> r = c.session->receive(kChunk);
		if (!r.ok()) {
			fail(c, r.error().message());
			return;
		}
		if (r->bytes > 0) {
			Clock::time_point now = Clock::now();
			if (!draining_)
				c.longestStall = std::max(c.longestStall, now - c.lastReceive);
			c.lastReceive = now;
		}
		if (r->endOfStream) {
			if (c.phase == Phase::Draining)
				finish(c);
			else
				fail(c, "the server ended the stream (EOF) at offset " + std::to_string(c.session->received()));
			return;
		}
	}
	if (events & EPOLLOUT)
		pumpSend(c);
}

void DemoClient::beginDrain()
{
	if (draining_)
		return;
	draining_ = true;
	drainStarted_ = Clock::now();
	for (Connection &c : connections_) {
		if (c.phase != Phase::Open)
			continue;
		// The time since the last reception counts as a stall too: a
		// server that went silent for good must not look healthy.
		if (!options_.idle)
			c.longestStall = std::max(c.longestStall, drainStarted_ - c.lastReceive);
		c.phase = Phase::Draining;
		c.writeInterest = false;
		if (Status s = watch(c, EPOLL_CTL_MOD); !s.ok()) {
			fail(c, s.error().message());
			continue;
		}
		// Our FIN tells the server we are done; it closes its side after
		// everything we sent, and we verify its stream up to that end.
		if (::shutdown(c.session->fd(), SHUT_WR) < 0)
			fail(c, std::string("shutdown: ") + std::strerror(errno));
	}
}

bool DemoClient::allDone() const
{
	return std::all_of(connections_.begin(), connections_.end(),
		[](const Connection &c) { return c.phase == Phase::Closed || c.phase == Phase::Failed; });
}

void DemoClient::onTick()
{
	uint64_t expirations = 0;
	while (::read(timer_.get(), &expirations, sizeof(expirations)) > 0) {
	}
	Clock::time_point now = Clock::now();
	if (!draining_ && options_.durationSeconds > 0 &&
	    now - started_ >= std::chrono::duration<double>(options_.durationSeconds))
		beginDrain();
	if (draining_) {
		if (now - drainStarted_ >= std::chrono::duration<double>(options_.drainSeconds)) {
			for (Connection &c : connections_)
				if (c.phase == Phase::Draining)
					fail(c, "the server did not end the stream within the drain timeout");
		}
		return;
	}
	if (options_.idle)
		return;
	for (Connection &c : connections_) {
		if (c.phase != Phase::Open)
			continue;
		c.bucket.refill(now);
		if (!c.writeInterest)
			pumpSend(c);
	}
}

void DemoClient::onSignal()
{
	signalfd_siginfo info{};
	while (::read(signals_.get(), &info, sizeof(info)) == sizeof(info)) {
		if (info.ssi_signo == SIGUSR1)
			printReport("progress");
		else
			beginDrain();
	}
}

void DemoClient::printReport(const char *event)
{
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> w(buffer);
	uint64_t sent = 0, verified = 0, errors = 0, alive = 0;
	Clock::duration longest{};
	Clock::time_point now = Clock::now();
	w.StartObject();
	w.Key("event");
	w.String(event);
	w.Key("server");
	w.String(options_.server.toString().c_str());
	w.Key("idle");
	w.Bool(options_.idle);
	w.Key("seed");
	w.Uint64(baseSeed_);
	if (!options_.totalsOnly) {
		w.Key("connections");
		w.StartArray();
	}
	for (const Connection &c : connections_) {
		Clock::duration stall = c.longestStall;
		if (c.phase == Phase::Open && !options_.idle)
			stall = std::max(stall, now - c.lastReceive);
		sent += c.session->sent();
		verified += c.session->received();
		longest = std::max(longest, stall);
		if (c.phase == Phase::Failed)
			errors++;
		else
			alive++;
		if (options_.totalsOnly)
			continue;
		w.StartObject();
		w.Key("id");
		w.Uint(c.id);
		w.Key("local");
		w.String(c.flow.local.toString().c_str());
		w.Key("remote");
		w.String(c.flow.remote.toString().c_str());
		w.Key("bytesSent");
		w.Uint64(c.session->sent());
		w.Key("bytesVerified");
		w.Uint64(c.session->received());
		w.Key("longestStallMs");
		w.Double(std::round(toMs(stall) * 1000) / 1000);
		w.Key("state");
		w.String(phaseName(c.phase));
		if (!c.error.empty()) {
			w.Key("error");
			w.String(c.error.c_str());
		}
		w.EndObject();
	}
	if (!options_.totalsOnly)
		w.EndArray();
	w.Key("totals");
	w.StartObject();
	w.Key("connections");
	w.Uint64(connections_.size());
	w.Key("alive");
	w.Uint64(alive);
	w.Key("errors");
	w.Uint64(errors);
	w.Key("bytesSent");
	w.Uint64(sent);
	w.Key("bytesVerified");
	w.Uint64(verified);
	w.Key("longestStallMs");
	w.Double(std::round(toMs(longest) * 1000) / 1000);
	w.Key("seconds");
	w.Double(std::round(std::chrono::duration<double>(now - started_).count() * 1000) / 1000);
	w.EndObject();
	w.Key("result");
	w.String(errors == 0 ? "ok" : "failed");
	w.EndObject();
	std::printf("%s\n", buffer.GetString());
	std::fflush(stdout);
}

int DemoClient::run()
{
	epoll_event events[kMaxEvents];
	while (!(draining_ && allDone())) {
		int n = ::epoll_wait(epoll_.get(), events, kMaxEvents, -1);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			std::fprintf(stderr, "ferry-demo-client: epoll_wait: %s\n", std::strerror(errno));
			break;
		}
		for (int i = 0; i < n; i++) {
			uint64_t key = events[i].data.u64;
			if (key == UINT64_MAX)
				onSignal();
			else if (key == UINT64_MAX - 1)
				onTick();
			else if (key < connections_.size())
				onConnection(connections_[key], events[i].events);
		}
	}
	printReport("report");
	bool failed = std::any_of(connections_.begin(), connections_.end(),
		[](const Connection &c) { return c.phase == Phase::Failed; });
	return failed ? 1 : 0;
}

Result<double> parseSeconds(std::string_view text, const char *option)
{
	std::string s(text);
	char *end = nullptr;
	double v = std::strtod(s.c_str(), &end);
	if (s.empty() || *end != '\0' || !(v >= 0) || !std::isfinite(v))
		return makeError(std::string(option) + " '" + s + "' is not a number of seconds", EINVAL);
	return v;
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
		} else if (arg == "--connect") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			FERRY_TRY_ASSIGN(o.server, Endpoint::parse(v));
			o.haveServer = true;
		} else if (arg == "--connections") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			FERRY_TRY_ASSIGN(uint64_t n, parseByteCount(v));
			if (n == 0 || n > 1000000)
				return makeError("--connections must be 1 to 1000000", EINVAL);
			o.connections = static_cast<unsigned>(n);
		} else if (arg == "--duration") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			FERRY_TRY_ASSIGN(o.durationSeconds, parseSeconds(v, "--duration"));
		} else if (arg == "--drain-timeout") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			FERRY_TRY_ASSIGN(o.drainSeconds, parseSeconds(v, "--drain-timeout"));
		} else if (arg == "--rate") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			FERRY_TRY_ASSIGN(o.rate, parseByteCount(v));
		} else if (arg == "--idle") {
			o.idle = true;
		} else if (arg == "--totals-only") {
			o.totalsOnly = true;
		} else if (arg == "--seed") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			FERRY_TRY_ASSIGN(uint64_t seed, parseByteCount(v));
			o.seed = seed;
		} else if (arg == "--log") {
			FERRY_TRY_ASSIGN(std::string_view v, value());
			if (!log::configure(v))
				return makeError("--log '" + std::string(v) + "' is not a log level spec", EINVAL);
		} else {
			return makeError("unknown argument '" + std::string(arg) + "' (see --help)", EINVAL);
		}
	}
	if (!o.haveServer)
		return makeError("--connect ADDRESS:PORT is required (see --help)", EINVAL);
	return o;
}

} // namespace

} // namespace ferry::demo

int main(int argc, char **argv)
{
	using namespace ferry::demo;
	ferry::Result<Options> options = parseOptions(argc, argv);
	if (!options.ok()) {
		std::fprintf(stderr, "ferry-demo-client: %s\n", options.error().message().c_str());
		return 2;
	}
	raiseFdLimit();
	DemoClient client(std::move(options).value());
	if (ferry::Status s = client.start(); !s.ok()) {
		std::fprintf(stderr, "ferry-demo-client: %s\n", s.error().message().c_str());
		return 2;
	}
	return client.run();
}
