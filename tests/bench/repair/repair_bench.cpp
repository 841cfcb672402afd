// TCP_REPAIR at scale (issue 2, "Benchmark"): N idle established
// connections are locked, snapshotted, discarded, passed through the image
// stream, restored, resumed, unlocked and verified, in a network namespace
// of the benchmark's own.
//
//   sudo build/tests/bench/repair/repair_bench [--connections N]...
//        [--family mixed|v4|v6] [--census flows|dump|none] [--bpf on|off]
//        [--restore prepared|plain]
//
// N defaults to 1,000 and 10,000; --connections may be repeated. Prints one
// JSON line per N:
//   connections                 N
//   snapshot_us/restore_us/resume_us
//                               per-connection time of repair::snapshot(),
//                               restore() and resume(), median and p99
//   syscalls_per_connection     syscalls the measuring thread entered during
//                               each loop, divided by N
//   syscall_count_method        how they were counted: a perf counter on the
//                               tracepoint raw_syscalls:sys_enter, for this
//                               thread only (every syscall, including those
//                               of libc and of closing fds), in a second
//                               migration of the same connections, because
//                               an enabled syscall tracepoint slows every
//                               syscall; "unavailable" with the reason when
//                               the kernel refuses it (counts are then null)
//   census_mode, census         the SocketCensus taken once before the
//                               snapshot loop (not in snapshot_us): total µs
//                               and syscalls. "flows" (default) looks the
//                               migrated flows up in batches, "dump" lists
//                               the whole namespace (here it also holds the
//                               peer ends), "none" leaves every snapshot()
//                               to make its own sock_diag round trip;
//                               "bpf": whether the census carried the BPF
//                               socket iterator's user options (--bpf off
//                               forces the census without it);
//                               "bpf_pass_us": the fastest of three more
//                               BPF passes timed alone (the census's own
//                               pass is part of "us" when "bpf" is true)
//   restore_mode, prepare_us    "prepared" (default, as ferryd does it):
//                               each socket is made ahead by
//                               prepareRestoreSocket() (prepare_us, not in
//                               restore_us) and restore() and resume() get
//                               the namespace's FreshSocketDefaults;
//                               "plain": restore() makes its own socket and
//                               every option is set (prepare_us null)
//   image_bytes_per_connection  compressed image bytes (ImageWriter, zstd
//                               level 3) divided by N
//   verified                    connections that carried a checksummed
//                               token both ways after the migration, with
//                               nothing lost, duplicated, reset or closed
//   lock_ms/unlock_ms, discard_us, encode_ms/decode_ms: the other steps,
//                               for context
// The process exits 1 if any connection fails verification.
//
// Setup. The peer ends live in a forked child (the hard limit on open files
// is per process: 10,000 connections need 20,000 fds in one namespace). The
// parent accepts, so the sockets it migrates are the server side, as for a
// container's service. Before the lock the two sides exchange an 8-byte
// hello each way, so that sequence numbers are not the initial ones, and
// wait until nothing is left unacknowledged: the connections are idle.
// Restore goes into the same namespace after the originals were discarded,
// over loopback (127.0.0.1 and ::1).
#include <linux/perf_event.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "base/netns.h"
#include "netlock/flow_lock.h"
#include "repair/diag_lookup.h"
#include "repair/kernel_features.h"
#include "repair/socket_iterator.h"
#include "repair/socket_repair.h"
#include "test_network.h"
#include "transport/image_reader.h"
#include "transport/image_writer.h"

using namespace ferry;
using Clock = std::chrono::steady_clock;

namespace {

enum class Family { Mixed, V4, V6 };

struct Options {
	std::vector<size_t> counts;
	Family family = Family::Mixed;
	std::string familyName = "mixed";
	// How snapshot() learns the sock_diag facts: "flows" (a census of the
	// migrated flows), "dump" (a census of the whole namespace) or "none"
	// (a sock_diag round trip inside every snapshot()).
	std::string census = "flows";
	// Whether the census may run the BPF socket iterator (--bpf off: the
	// census as without BPF, for comparison).
	bool bpf = true;
	// "prepared": sockets made ahead and fresh-socket defaults, as ferryd
	// restores; "plain": restore() and resume() alone.
	std::string restore = "prepared";
};

// A static, so that std::exit() from die() still removes the namespace
// (static destructors run on exit; the forked children use _exit()).
std::optional<test::TestNetwork> network;

[[noreturn]] void die(const std::string &what)
{
	std::fprintf(stderr, "repair_bench: %s\n", what.c_str());
	std::exit(1);
}

[[noreturn]] void dieErrno(const std::string &what)
{
	die(what + ": " + std::strerror(errno));
}

double microseconds(Clock::duration d)
{
	return std::chrono::duration<double, std::micro>(d).count();
}

struct Percentiles {
	double median = 0;
	double p99 = 0;
};

Percentiles percentiles(std::vector<double> v)
{
	if (v.empty())
		return {};
	std::sort(v.begin(), v.end());
	size_t p99 = static_cast<size_t>(std::ceil(0.99 * static_cast<double>(v.size()))) - 1;
	return {v[v.size() / 2], v[std::min(p99, v.size() - 1)]};
}

// ---- syscall counting --------------------------------------------------

// The id of the tracepoint raw_syscalls:sys_enter. tracefs is often not
// mounted; then a helper child mounts it in a mount namespace of its own
// (gone when it exits), so the host's mounts are left alone.
std::optional<uint64_t> sysEnterTracepointId(std::string &why)
{
	const char *kRelative = "events/raw_syscalls/sys_enter/id";
	for (const char *root : {"/sys/kernel/tracing/", "/sys/kernel/debug/tracing/"}) {
		std::ifstream in(std::string(root) + kRelative);
		uint64_t id = 0;
		if (in >> id)
			return id;
	}
	int pipeFds[2];
	if (::pipe2(pipeFds, O_CLOEXEC) < 0) {
		why = "pipe failed";
		return std::nullopt;
	}
	pid_t pid = ::fork();
	if (pid == 0) {
		::close(pipeFds[0]);
		uint64_t id = 0;
		if (::unshare(CLONE_NEWNS) == 0 && ::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0 &&
		    ::mount("tracefs", "/sys/kernel/tracing", "tracefs", 0, nullptr) == 0) {
			std::ifstream in(std::string("/sys/kernel/tracing/") + kRelative);
			in >> id;
		}
		ssize_t ignored = ::write(pipeFds[1], &id, sizeof(id));
		(void)ignored;
		::_exit(0);
	}
	::close(pipeFds[1]);
	uint64_t id = 0;
	ssize_t n = pid > 0 ? ::read(pipeFds[0], &id, sizeof(id)) : -1;
	::close(pipeFds[0]);
	if (pid > 0)
		::waitpid(pid, nullptr, 0);
	if (n != sizeof(id) || id == 0) {
		why = "tracefs (raw_syscalls:sys_enter) is not available";
		return std::nullopt;
	}
	return id;
}

// Counts the syscalls the calling thread enters. count() is itself a
// syscall (read), which the difference of two counts includes once; it is
// subtracted. While a counter exists the kernel runs every syscall of
// every task through its tracing path, which makes them slower: time
// nothing while one is open.
class SyscallCounter {
public:
	static std::optional<SyscallCounter> open(uint64_t tracepoint, std::string &why)
	{
		perf_event_attr attr{};
		attr.type = PERF_TYPE_TRACEPOINT;
		attr.size = sizeof(attr);
		attr.config = tracepoint;
		int fd = static_cast<int>(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, PERF_FLAG_FD_CLOEXEC));
		if (fd < 0) {
			why = std::string("perf_event_open: ") + std::strerror(errno);
			return std::nullopt;
		}
		SyscallCounter counter(fd);
		uint64_t a = counter.count();
		uint64_t b = counter.count();
		counter.overhead_ = b - a;
		return counter;
	}

	uint64_t count() const
	{
		uint64_t value = 0;
		if (::read(fd_.get(), &value, sizeof(value)) != sizeof(value))
			dieErrno("reading the syscall counter");
		return value;
	}
	uint64_t since(uint64_t start) const { return count() - start - overhead_; }

private:
	explicit SyscallCounter(int fd) : fd_(fd) {}
	UniqueFd fd_;
	uint64_t overhead_ = 0;
};

// ---- sockets -----------------------------------------------------------

void raiseFileLimit(size_t needed)
{
	rlimit limit{};
	if (::getrlimit(RLIMIT_NOFILE, &limit) < 0)
		dieErrno("getrlimit");
	limit.rlim_cur = limit.rlim_max;
	if (::setrlimit(RLIMIT_NOFILE, &limit) < 0)
		dieErrno("setrlimit");
	if (limit.rlim_cur < needed)
		die("the hard limit on open files (" + std::to_string(limit.rlim_max) + ") is below the " +
		    std::to_string(needed) + " this run needs");
}

bool readExact(int fd, void *buffer, size_t length, int timeoutMs)
{
	auto *p = static_cast<uint8_t *>(buffer);
	size_t done = 0;
	while (done < length) {
		pollfd pfd{fd, POLLIN, 0};
		int ready = ::poll(&pfd, 1, timeoutMs);
		if (ready <= 0)
			return false;
		ssize_t n = ::recv(fd, p + done, length - done, MSG_DONTWAIT);
		if (n <= 0) {
			if (n < 0 && (errno == EAGAIN || errno == EINTR))
				continue;
			return false;
		}
		done += static_cast<size_t>(n);
	}
	return true;
}

bool writeExact(int fd, const void *buffer, size_t length)
{
	return ::send(fd, buffer, length, MSG_NOSIGNAL | MSG_DONTWAIT) == static_cast<ssize_t>(length);
}

// Nothing more to read, no EOF, no error: the stream holds exactly what
// the verification sent.
bool quiet(int fd)
{
	char c;
	return ::recv(fd, &c, 1, MSG_DONTWAIT | MSG_PEEK) < 0 && errno == EAGAIN;
}

uint16_t localPort(int fd)
{
	sockaddr_storage ss{};
	socklen_t length = sizeof(ss);
	if (::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &length) < 0)
		dieErrno("getsockname");
	return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in *>(&ss)->sin_port
	                                     : reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
}

uint16_t remotePort(int fd)
{
	sockaddr_storage ss{};
	socklen_t length = sizeof(ss);
	if (::getpeername(fd, reinterpret_cast<sockaddr *>(&ss), &length) < 0)
		return 0;
	return ntohs(ss.ss_family == AF_INET ? reinterpret_cast<sockaddr_in *>(&ss)->sin_port
	                                     : reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port);
}

int unacked(int fd)
{
	int value = 0;
	return ::ioctl(fd, SIOCOUTQ, &value) < 0 ? -1 : value;
}

// Waits until no socket has bytes in flight (all acknowledged): idle.
bool waitIdle(const std::vector<UniqueFd> &fds, int timeoutMs)
{
	auto deadline = Clock::now() + std::chrono::milliseconds(timeoutMs);
	for (const UniqueFd &fd : fds) {
		while (unacked(fd.get()) != 0) {
			if (Clock::now() > deadline)
				return false;
			::usleep(1000);
		}
	}
	return true;
}

// Tokens carry both ports and the pass, and are checksummed, so a byte
// lost, duplicated or delivered to the wrong connection breaks the check.
// kind: 1 hello child->parent, 2 hello parent->child, 3 verification
// parent->child, 4 its reply child->parent.
struct Token {
	uint16_t kind = 0;
	uint16_t pass = 0;
	uint16_t parentPort = 0;
	uint16_t childPort = 0;
	uint32_t verdict = 0; // in replies: the child's check of kind 3 (1 = good)
	uint32_t check = 0;

	uint32_t expected() const
	{
		uint32_t h = 2166136261u;
		for (uint32_t v : {uint32_t(kind), uint32_t(pass), uint32_t(parentPort), uint32_t(childPort), verdict})
			h = (h ^ v) * 16777619u;
		return h;
	}
	void seal() { check = expected(); }
	bool valid(uint16_t wantKind, uint16_t wantPass, uint16_t parent, uint16_t child) const
	{
		return kind == wantKind && pass == wantPass && parentPort == parent && childPort == child &&
		       check == expected();
	}
};
static_assert(sizeof(Token) == 16);

// ---- the peer child ------------------------------------------------------

// Control messages on a SOCK_SEQPACKET pair.
struct Command {
	char op = 0; // 'c' connect, 'v' verify, 'x' exit
	uint32_t count = 0;
	uint16_t v4Port = 0;
	uint16_t v6Port = 0;
	uint8_t family = 0;
	uint16_t pass = 0; // 'v': which migration the tokens follow
};
struct Reply {
	char status = 0; // 'k' ok, 'e' error
	uint32_t good = 0;
	char message[120] = {};
};

void sendReply(int control, char status, uint32_t good, const std::string &message)
{
	Reply r;
	r.status = status;
	r.good = good;
	std::snprintf(r.message, sizeof(r.message), "%s", message.c_str());
	if (::send(control, &r, sizeof(r), MSG_NOSIGNAL) != sizeof(r))
		::_exit(3);
}

bool useV4(Family family, size_t i)
{
	return family == Family::V4 || (family == Family::Mixed && i % 2 == 0);
}

// Runs in the child: holds the peer ends, answers commands until 'x'.
[[noreturn]] void peerMain(int control)
{
	std::vector<UniqueFd> fds;
	for (;;) {
		Command c;
		if (::recv(control, &c, sizeof(c), 0) != sizeof(c))
			::_exit(2);
		if (c.op == 'x')
			::_exit(0);
		if (c.op == 'c') {
			fds.clear();
			std::string error;
			for (size_t i = 0; i < c.count && error.empty(); ++i) {
				bool v4 = useV4(static_cast<Family>(c.family), i);
				UniqueFd fd(::socket(v4 ? AF_INET : AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
				sockaddr_storage ss{};
				socklen_t length;
				if (v4) {
					auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
					sin->sin_family = AF_INET;
					sin->sin_port = htons(c.v4Port);
					sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
					length = sizeof(sockaddr_in);
				} else {
					auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
					sin6->sin6_family = AF_INET6;
					sin6->sin6_port = htons(c.v6Port);
					sin6->sin6_addr = in6addr_loopback;
					length = sizeof(sockaddr_in6);
				}
				if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), length) < 0) {
					error = std::string("connect: ") + std::strerror(errno);
					break;
				}
				Token hello{1, 0, v4 ? c.v4Port : c.v6Port, localPort(fd.get())};
				hello.seal();
				if (!writeExact(fd.get(), &hello, sizeof(hello)))
					error = "sending the hello failed";
				fds.push_back(std::move(fd));
			}
			// The parent's hello, then wait until ours is acknowledged.
			for (size_t i = 0; i < fds.size() && error.empty(); ++i) {
				Token t;
				int fd = fds[i].get();
				if (!readExact(fd, &t, sizeof(t), 10000) || !t.valid(2, 0, remotePort(fd), localPort(fd)))
					error = "bad hello from the parent on connection " + std::to_string(i);
			}
			if (error.empty() && !waitIdle(fds, 10000))
				error = "hellos were not acknowledged in time";
			sendReply(control, error.empty() ? 'k' : 'e', static_cast<uint32_t>(fds.size()), error);
		} else if (c.op == 'v') {
			uint32_t good = 0;
			int timeoutMs = 5000;
			std::string first;
			for (size_t i = 0; i < fds.size(); ++i) {
				int fd = fds[i].get();
				Token t;
				uint16_t mine = localPort(fd);
				uint16_t theirs = remotePort(fd);
				bool ok = readExact(fd, &t, sizeof(t), timeoutMs) && t.valid(3, c.pass, theirs, mine) && quiet(fd);
				if (!ok) {
					if (first.empty())
						first = "connection " + std::to_string(i) + " (port " + std::to_string(mine) +
						        "): token missing, wrong or followed by more";
					timeoutMs = 200; // one slow failure is enough to know
				}
				Token reply{4, c.pass, theirs, mine, ok ? 1u : 0u};
				reply.seal();
				if (writeExact(fd, &reply, sizeof(reply)) && ok)
					++good;
			}
			sendReply(control, 'k', good, first);
		}
	}
}

// ---- one round -----------------------------------------------------------

UniqueFd listenOn(int family)
{
	UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
	sockaddr_storage ss{};
	socklen_t length;
	if (family == AF_INET) {
		auto *sin = reinterpret_cast<sockaddr_in *>(&ss);
		sin->sin_family = AF_INET;
		sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		length = sizeof(sockaddr_in);
	} else {
		auto *sin6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		sin6->sin6_family = AF_INET6;
		sin6->sin6_addr = in6addr_loopback;
		length = sizeof(sockaddr_in6);
	}
	if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), length) < 0 || ::listen(fd.get(), 65535) < 0)
		dieErrno("listener");
	return fd;
}

Reply awaitReply(int control)
{
	Reply r;
	if (::recv(control, &r, sizeof(r), 0) != sizeof(r))
		die("the peer child went away");
	if (r.status != 'k')
		die(std::string("peer child: ") + r.message);
	return r;
}

FlowId flowOf(int fd)
{
	sockaddr_storage local{}, remote{};
	socklen_t localLength = sizeof(local), remoteLength = sizeof(remote);
	if (::getsockname(fd, reinterpret_cast<sockaddr *>(&local), &localLength) < 0 ||
	    ::getpeername(fd, reinterpret_cast<sockaddr *>(&remote), &remoteLength) < 0)
		dieErrno("socket names");
	Result<Endpoint> l = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&local), localLength);
	Result<Endpoint> r = Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&remote), remoteLength);
	if (!l || !r)
		die("cannot name a flow");
	return {*l, *r};
}

std::string jsonPercentiles(const std::vector<double> &samples)
{
	Percentiles p = percentiles(samples);
	char text[96];
	std::snprintf(text, sizeof(text), "{\"median\":%.2f,\"p99\":%.2f}", p.median, p.p99);
	return text;
}

struct PassResult {
	std::vector<double> snapshotUs, prepareUs, restoreUs, resumeUs, discardUs;
	uint64_t censusCalls = 0, snapshotCalls = 0, restoreCalls = 0, resumeCalls = 0;
	double censusUs = 0, lockMs = 0, unlockMs = 0, encodeMs = 0, decodeMs = 0;
	bool censusIterated = false;
	double iteratorUs = 0; // a BPF pass alone, to show its share of the census
	size_t imageBytes = 0;
	size_t verified = 0;
};

// Migrates every connection in `fds` once: lock, census, snapshot, discard,
// image, restore, resume, unlock, verify. `fds` then holds the restored
// sockets. With a counter, the loops' syscalls are counted (and their
// times are not representative: see SyscallCounter).
PassResult migrateAll(std::vector<UniqueFd> &fds, uint16_t pass, const Options &options, const test::TestHost &host,
                      const repair::KernelFeatures &features, const SyscallCounter *counter, int control)
{
	size_t count = fds.size();
	PassResult r;
	auto countNow = [&]() { return counter ? counter->count() : 0; };
	auto countSince = [&](uint64_t start) { return counter ? counter->since(start) : 0; };

	std::vector<FlowId> flows;
	flows.reserve(count);
	for (const UniqueFd &fd : fds)
		flows.push_back(flowOf(fd.get()));

	// Lock, as a migration does before its dump, and keep the lock until
	// every socket is resumed.
	netlock::FlowLockPtr lock = netlock::makeFlowLock(netlock::LockStrategy::DropBothWays);
	auto t0 = Clock::now();
	Status locked = lock->lock(host.netns, "repairbench-" + std::to_string(count) + "-" + std::to_string(pass), flows,
	                           repair::kCraftedPacketMark);
	r.lockMs = microseconds(Clock::now() - t0) / 1000;
	if (!locked)
		die("lock: " + locked.error().message());

	// One sock_diag dump for the namespace replaces a lookup per socket.
	std::optional<repair::SocketCensus> census;
	if (options.census != "none") {
		uint64_t c0 = countNow();
		auto c = Clock::now();
		repair::CensusOptions how;
		how.socketIterator = options.bpf;
		Result<repair::SocketCensus> taken =
			options.census == "dump" ? repair::SocketCensus::take(how) : repair::SocketCensus::take(flows, how);
		r.censusUs = microseconds(Clock::now() - c);
		r.censusCalls = countSince(c0);
		if (!taken)
			die("census: " + taken.error().message());
		r.censusIterated = taken->iterated();
		census.emplace(std::move(*taken));
		// The fastest of three more passes: the pass's own cost, with
		// less of the host's noise than one sample.
		for (int i = 0; r.censusIterated && i < 3; ++i) {
			auto i0 = Clock::now();
			Result<std::vector<repair::IteratedSocket>> again = (*repair::SocketIterator::shared())->read();
			double us = microseconds(Clock::now() - i0);
			if (!again)
				die("BPF socket iterator: " + again.error().message());
			r.iteratorUs = i == 0 ? us : std::min(r.iteratorUs, us);
		}
	}
	repair::SnapshotOptions snapshotOptions;
	snapshotOptions.census = census ? &*census : nullptr;
	snapshotOptions.features = &features;

	std::vector<repair::ConnectionSnapshot> snapshots;
	snapshots.reserve(count);
	r.snapshotUs.reserve(count);
	r.restoreUs.reserve(count);
	r.resumeUs.reserve(count);
	r.discardUs.reserve(count);

	uint64_t c0 = countNow();
	for (size_t i = 0; i < count; ++i) {
		auto a = Clock::now();
		Result<repair::ConnectionSnapshot> snap = repair::snapshot(fds[i].get(), snapshotOptions);
		auto b = Clock::now();
		if (!snap)
			die("snapshot: " + snap.error().message());
		r.snapshotUs.push_back(microseconds(b - a));
		snapshots.push_back(std::move(*snap));
	}
	r.snapshotCalls = countSince(c0);

	for (size_t i = 0; i < count; ++i) {
		auto a = Clock::now();
		Status discarded = repair::discard(std::move(fds[i]));
		r.discardUs.push_back(microseconds(Clock::now() - a));
		if (!discarded)
			die("discard: " + discarded.error().message());
	}
	fds.clear();

	// Through the real image stream, as a destination would receive it.
	std::vector<uint8_t> image;
	auto e0 = Clock::now();
	{
		transport::ImageHeader header;
		header.producer = "ferry repair_bench";
		Result<transport::ImageWriter> writer =
			transport::ImageWriter::create(header, [&](std::span<const uint8_t> bytes) -> Status {
				image.insert(image.end(), bytes.begin(), bytes.end());
				return {};
			});
		if (!writer)
			die("image writer: " + writer.error().message());
		for (const repair::ConnectionSnapshot &s : snapshots) {
			Status added = writer->add(s);
			if (!added)
				die("encode: " + added.error().message());
		}
		Result<transport::ImageSummary> summary = writer->finish();
		if (!summary)
			die("encode: " + summary.error().message());
	}
	auto e1 = Clock::now();
	snapshots.clear();
	std::vector<repair::ConnectionSnapshot> decoded;
	decoded.reserve(count);
	{
		Result<transport::ImageReader> reader =
			transport::ImageReader::create([&](uint64_t, repair::ConnectionSnapshot &&s) -> Status {
				decoded.push_back(std::move(s));
				return {};
			});
		if (!reader)
			die("image reader: " + reader.error().message());
		constexpr size_t kChunk = 64 * 1024;
		for (size_t pos = 0; pos < image.size(); pos += kChunk) {
			Status fed = reader->feed(std::span<const uint8_t>(image.data() + pos, std::min(kChunk, image.size() - pos)));
			if (!fed)
				die("decode: " + fed.error().message());
		}
		Result<transport::ImageSummary> summary = reader->finish();
		if (!summary)
			die("decode: " + summary.error().message());
	}
	auto e2 = Clock::now();
	r.encodeMs = microseconds(e1 - e0) / 1000;
	r.decodeMs = microseconds(e2 - e1) / 1000;
	r.imageBytes = image.size();
	if (decoded.size() != count)
		die("the image held " + std::to_string(decoded.size()) + " connections");

	std::optional<repair::FreshSocketDefaults> fresh;
	std::vector<UniqueFd> prepared(count);
	if (options.restore == "prepared") {
		Result<repair::FreshSocketDefaults> probed = repair::probeFreshSocketDefaults();
		if (!probed)
			die("fresh socket defaults: " + probed.error().message());
		fresh = *probed;
		r.prepareUs.reserve(count);
		for (size_t i = 0; i < count; ++i) {
			auto a = Clock::now();
			Result<UniqueFd> fd = repair::prepareRestoreSocket(decoded[i].family);
			r.prepareUs.push_back(microseconds(Clock::now() - a));
			if (!fd)
				die("prepare: " + fd.error().message());
			prepared[i] = std::move(*fd);
		}
	}
	const repair::FreshSocketDefaults *defaults = fresh ? &*fresh : nullptr;

	fds.reserve(count);
	c0 = countNow();
	for (size_t i = 0; i < count; ++i) {
		auto a = Clock::now();
		Result<UniqueFd> fd = prepared[i] ? repair::restore(std::move(prepared[i]), decoded[i], defaults)
		                                  : repair::restore(decoded[i]);
		auto b = Clock::now();
		if (!fd)
			die("restore: " + fd.error().message());
		r.restoreUs.push_back(microseconds(b - a));
		fds.push_back(std::move(*fd));
	}
	r.restoreCalls = countSince(c0);

	c0 = countNow();
	for (size_t i = 0; i < count; ++i) {
		auto a = Clock::now();
		Status resumed = repair::resume(fds[i].get(), decoded[i], defaults);
		auto b = Clock::now();
		if (!resumed)
			die("resume: " + resumed.error().message());
		r.resumeUs.push_back(microseconds(b - a));
	}
	r.resumeCalls = countSince(c0);

	t0 = Clock::now();
	Status unlocked = lock->unlock();
	r.unlockMs = microseconds(Clock::now() - t0) / 1000;
	if (!unlocked)
		die("unlock: " + unlocked.error().message());

	// Verify: a token each way on every connection.
	for (const UniqueFd &fd : fds) {
		Token t{3, pass, localPort(fd.get()), remotePort(fd.get())};
		t.seal();
		if (!writeExact(fd.get(), &t, sizeof(t)))
			dieErrno("sending a verification token");
	}
	Command verifyCommand{'v', 0, 0, 0, 0, pass};
	if (::send(control, &verifyCommand, sizeof(verifyCommand), 0) != sizeof(verifyCommand))
		dieErrno("control");
	std::string firstFailure;
	int timeoutMs = 5000;
	for (size_t i = 0; i < count; ++i) {
		int fd = fds[i].get();
		Token reply;
		bool ok = readExact(fd, &reply, sizeof(reply), timeoutMs) &&
		          reply.valid(4, pass, localPort(fd), remotePort(fd)) && reply.verdict == 1 && quiet(fd);
		if (ok) {
			++r.verified;
		} else {
			timeoutMs = 200;
			if (firstFailure.empty())
				firstFailure = "connection " + std::to_string(i) + " (" + decoded[i].flow.toString() + ")";
		}
	}
	Reply childVerdict = awaitReply(control);
	if (r.verified != count || childVerdict.good != count)
		die("pass " + std::to_string(pass) + ": " + std::to_string(count - r.verified) +
		    " connections failed verification; first: " + firstFailure +
		    (childVerdict.message[0] ? std::string("; peer child: ") + childVerdict.message : std::string()));
	return r;
}

void runRound(size_t count, const Options &options, const test::TestHost &host, const repair::KernelFeatures &features,
              std::optional<uint64_t> tracepoint, const std::string &method)
{
	UniqueFd v4Listener = listenOn(AF_INET);
	UniqueFd v6Listener = listenOn(AF_INET6);
	uint16_t v4Port = localPort(v4Listener.get());
	uint16_t v6Port = localPort(v6Listener.get());

	int controlPair[2];
	if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, controlPair) < 0)
		dieErrno("socketpair");
	UniqueFd control(controlPair[0]);
	pid_t child = ::fork();
	if (child < 0)
		dieErrno("fork");
	if (child == 0) {
		::close(controlPair[0]);
		v4Listener.reset();
		v6Listener.reset();
		peerMain(controlPair[1]);
	}
	::close(controlPair[1]);

	// Connect: the child connects, we accept as it goes (the backlog is
	// raised in the namespace, so connect never waits for a SYN retry).
	Command connectCommand{'c', static_cast<uint32_t>(count), v4Port, v6Port, static_cast<uint8_t>(options.family), 0};
	if (::send(control.get(), &connectCommand, sizeof(connectCommand), 0) != sizeof(connectCommand))
		dieErrno("control");
	std::vector<UniqueFd> fds;
	fds.reserve(count);
	for (size_t i = 0; i < count; ++i) {
		int listener = useV4(options.family, i) ? v4Listener.get() : v6Listener.get();
		UniqueFd fd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
		if (!fd)
			dieErrno("accept");
		fds.push_back(std::move(fd));
	}
	for (size_t i = 0; i < count; ++i) {
		int fd = fds[i].get();
		Token hello;
		if (!readExact(fd, &hello, sizeof(hello), 10000) || !hello.valid(1, 0, localPort(fd), remotePort(fd)))
			die("bad hello from the child on connection " + std::to_string(i));
		Token reply{2, 0, localPort(fd), remotePort(fd)};
		reply.seal();
		if (!writeExact(fd, &reply, sizeof(reply)))
			dieErrno("hello");
	}
	awaitReply(control.get());
	if (!waitIdle(fds, 10000))
		die("our hellos were not acknowledged in time");

	// Pass 0 is timed. Pass 1 migrates the restored connections again with
	// the syscall counter open: an enabled syscall tracepoint slows every
	// syscall down, so counts and times come from separate passes.
	PassResult timed = migrateAll(fds, 0, options, host, features, nullptr, control.get());
	PassResult counted;
	if (tracepoint) {
		std::string why;
		std::optional<SyscallCounter> counter = SyscallCounter::open(*tracepoint, why);
		if (!counter)
			die("syscall counter: " + why);
		counted = migrateAll(fds, 1, options, host, features, &*counter, control.get());
	}

	Command exitCommand{'x', 0, 0, 0, 0, 0};
	(void)::send(control.get(), &exitCommand, sizeof(exitCommand), 0);
	fds.clear();
	::waitpid(child, nullptr, 0);

	auto perConnection = [&](uint64_t calls) {
		if (!tracepoint)
			return std::string("null");
		char text[32];
		std::snprintf(text, sizeof(text), "%.2f", static_cast<double>(calls) / static_cast<double>(count));
		return std::string(text);
	};
	std::string census = options.census == "none"
	                             ? "null"
	                             : "{\"us\":" + std::to_string(static_cast<long>(timed.censusUs)) +
	                                       ",\"syscalls\":" + (tracepoint ? std::to_string(counted.censusCalls) : "null") +
	                                       ",\"bpf\":" + (timed.censusIterated ? "true" : "false") +
	                                       ",\"bpf_pass_us\":" + std::to_string(static_cast<long>(timed.iteratorUs)) + "}";
	std::printf("{\"connections\":%zu,\"family\":\"%s\",\"snapshot_us\":%s,\"restore_us\":%s,\"resume_us\":%s,"
	            "\"syscalls_per_connection\":{\"snapshot\":%s,\"restore\":%s,\"resume\":%s},"
	            "\"syscall_count_method\":\"%s\",\"census_mode\":\"%s\",\"census\":%s,"
	            "\"restore_mode\":\"%s\",\"prepare_us\":%s,"
	            "\"image_bytes_per_connection\":%.1f,\"verified\":%zu,"
	            "\"lock_ms\":%.2f,\"unlock_ms\":%.2f,\"discard_us\":%s,\"encode_ms\":%.2f,\"decode_ms\":%.2f}\n",
	            count, options.familyName.c_str(), jsonPercentiles(timed.snapshotUs).c_str(),
	            jsonPercentiles(timed.restoreUs).c_str(), jsonPercentiles(timed.resumeUs).c_str(),
	            perConnection(counted.snapshotCalls).c_str(), perConnection(counted.restoreCalls).c_str(),
	            perConnection(counted.resumeCalls).c_str(), method.c_str(), options.census.c_str(), census.c_str(),
	            options.restore.c_str(), timed.prepareUs.empty() ? "null" : jsonPercentiles(timed.prepareUs).c_str(),
	            static_cast<double>(timed.imageBytes) / static_cast<double>(count), timed.verified, timed.lockMs,
	            timed.unlockMs, jsonPercentiles(timed.discardUs).c_str(), timed.encodeMs, timed.decodeMs);
	std::fflush(stdout);
}

int usage()
{
	std::fprintf(stderr, "usage: repair_bench [--connections N]... [--family mixed|v4|v6] [--census flows|dump|none] "
	                     "[--bpf on|off] [--restore prepared|plain]\n");
	return 2;
}

} // namespace

int main(int argc, char **argv)
{
	Options options;
	for (int i = 1; i < argc; ++i) {
		std::string arg = argv[i];
		if (i + 1 >= argc)
			return usage();
		std::string value = argv[++i];
		if (arg == "--connections") {
			char *end = nullptr;
			unsigned long n = std::strtoul(value.c_str(), &end, 10);
			if (n == 0 || *end != '\0')
				return usage();
			options.counts.push_back(n);
		} else if (arg == "--census") {
			if (value != "flows" && value != "dump" && value != "none")
				return usage();
			options.census = value;
		} else if (arg == "--bpf") {
			if (value != "on" && value != "off")
				return usage();
			options.bpf = value == "on";
		} else if (arg == "--restore") {
			if (value != "prepared" && value != "plain")
				return usage();
			options.restore = value;
		} else if (arg == "--family") {
			options.familyName = value;
			if (value == "mixed")
				options.family = Family::Mixed;
			else if (value == "v4")
				options.family = Family::V4;
			else if (value == "v6")
				options.family = Family::V6;
			else
				return usage();
		} else {
			return usage();
		}
	}
	if (options.counts.empty())
		options.counts = {1000, 10000};
	if (::geteuid() != 0) {
		std::fprintf(stderr, "repair_bench needs root (network namespaces, nftables, TCP_REPAIR)\n");
		return 77;
	}
	// Both processes hold one end per connection, plus a few.
	raiseFileLimit(*std::max_element(options.counts.begin(), options.counts.end()) + 64);

	std::string why;
	std::optional<uint64_t> tracepoint = sysEnterTracepointId(why);
	std::string method = tracepoint ? "perf tracepoint raw_syscalls:sys_enter, measuring thread, separate pass"
	                                : "unavailable: " + why;
	// Removed with everything in it (the lock tables too) at exit. The
	// test support reports failures by throwing.
	test::TestHost host;
	try {
		network.emplace();
		host = network->addIsolatedHost("repairbench");
		// Enough backlog that the child's connects never wait for a SYN retry.
		test::mustRun(host.exec("sysctl -qw net.core.somaxconn=65535 net.ipv4.tcp_max_syn_backlog=65535"));
	} catch (const std::exception &e) {
		die(std::string("creating the namespace: ") + e.what());
	}
	UniqueFd netns = host.open();
	Result<ScopedNetns> inside = ScopedNetns::enter(netns.get());
	if (!inside)
		die("entering the namespace: " + inside.error().message());
	// Probed inside, like everything else the benchmark does.
	repair::KernelFeatures features = repair::probeKernelFeatures();

	for (size_t count : options.counts)
		runRound(count, options, host, features, tracepoint, method);
	return 0;
}
