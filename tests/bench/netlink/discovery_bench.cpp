// Discovery at scale: N established connections in a namespace of our
// own, listed with sock_diag and mapped to (pid, fd).
//
//   sudo build/tests/bench/netlink/netlink_discovery_bench [--sockets N] [--rounds R]
//
// Prints one JSON line:
//   {"sockets":N,"list_ms":..,"map_ms":..,...}
// sockets   the connections found by the filtered listing and joined to an owner
// list_ms   one filtered dump (local port = the listener's, ESTABLISHED), median of R
// map_ms    mapSocketOwners over this process and its child (2N socket fds), median of R
// list_all_ms / listed_all   an unfiltered dump of both ends (2N + 1 sockets)
// *_cpu_ms  the same, in CPU time of the measuring thread (see threadCpuMs)
//
// The open-files limit is 20,000 per process here, so the client ends live
// in a forked child: this process holds the listener and the N accepted
// sockets, the child the N connecting ones.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "base/netns.h"
#include "netlink/sock_diag.h"
#include "netlink/socket_owner.h"
#include "test_network.h"

using namespace ferry;
using namespace ferry::netlink;

namespace {

[[noreturn]] void die(const std::string &what)
{
	std::fprintf(stderr, "discovery_bench: %s\n", what.c_str());
	std::exit(1);
}

void raiseFileLimit(size_t needed)
{
	rlimit limit{};
	if (::getrlimit(RLIMIT_NOFILE, &limit) != 0)
		die("getrlimit: " + std::string(std::strerror(errno)));
	limit.rlim_cur = limit.rlim_max;
	if (::setrlimit(RLIMIT_NOFILE, &limit) != 0)
		die("setrlimit: " + std::string(std::strerror(errno)));
	if (limit.rlim_cur < needed)
		die("open-files hard limit " + std::to_string(limit.rlim_cur) + " is below the " + std::to_string(needed) +
		    " fds one process needs");
}

double msSince(std::chrono::steady_clock::time_point start)
{
	return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
}

// CPU time of the calling thread. The kernel's side of a sock_diag dump
// and of /proc reads runs in the caller's context, so this is the cost of
// the work itself; wall time also counts waiting for a busy CPU.
double threadCpuMs()
{
	timespec t{};
	::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
	return static_cast<double>(t.tv_sec) * 1e3 + static_cast<double>(t.tv_nsec) / 1e6;
}

double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	return v[v.size() / 2];
}

// The child: connect `count` sockets to 127.0.0.1:port inside the
// namespace, report one byte when done, then hold them until killed.
[[noreturn]] void runClients(int netnsFd, uint16_t port, size_t count, int doneFd)
{
	::prctl(PR_SET_PDEATHSIG, SIGKILL);
	if (::setns(netnsFd, CLONE_NEWNET) != 0)
		die("child setns: " + std::string(std::strerror(errno)));
	sockaddr_in to{};
	to.sin_family = AF_INET;
	to.sin_port = htons(port);
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	for (size_t i = 0; i < count; ++i) {
		int fd = ::socket(AF_INET, SOCK_STREAM, 0);
		if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr *>(&to), sizeof(to)) != 0)
			die("child connect #" + std::to_string(i) + ": " + std::strerror(errno));
	}
	char done = 1;
	if (::write(doneFd, &done, 1) != 1)
		die("child report");
	for (;;)
		::pause();
}

} // namespace

int main(int argc, char **argv)
{
	size_t count = 10000;
	int rounds = 5;
	for (int i = 1; i + 1 < argc; i += 2) {
		std::string flag = argv[i];
		if (flag == "--sockets")
			count = std::strtoul(argv[i + 1], nullptr, 10);
		else if (flag == "--rounds")
			rounds = std::max(1, std::atoi(argv[i + 1]));
		else
			die("usage: " + std::string(argv[0]) + " [--sockets N] [--rounds R]");
	}
	if (::geteuid() != 0) {
		std::fprintf(stderr, "discovery_bench needs root (it creates a network namespace)\n");
		return 77;
	}
	raiseFileLimit(count + 64);

	test::TestNetwork net;
	test::TestHost host = net.addIsolatedHost("bench");
	UniqueFd ns = host.open();

	Result<UniqueFd> listening = runInNetns(ns.get(), []() -> Result<UniqueFd> {
		UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
		sockaddr_in sin{};
		sin.sin_family = AF_INET;
		sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr *>(&sin), sizeof(sin)) != 0 || ::listen(fd.get(), 4096) != 0)
			return errnoError("listen on 127.0.0.1");
		return fd;
	});
	if (!listening.ok())
		die(listening.error().message());
	UniqueFd listener = std::move(*listening);
	sockaddr_in bound{};
	socklen_t boundLen = sizeof(bound);
	::getsockname(listener.get(), reinterpret_cast<sockaddr *>(&bound), &boundLen);
	uint16_t port = ntohs(bound.sin_port);

	int done[2];
	if (::pipe(done) != 0)
		die("pipe");
	pid_t child = ::fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		listener.reset();
		runClients(ns.get(), port, count, done[1]);
	}
	::close(done[1]);

	auto setupStart = std::chrono::steady_clock::now();
	std::vector<UniqueFd> accepted;
	accepted.reserve(count);
	while (accepted.size() < count) {
		pollfd p{listener.get(), POLLIN, 0};
		if (::poll(&p, 1, 10000) != 1)
			die("accept timed out after " + std::to_string(accepted.size()) + " connections");
		int fd = ::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC);
		if (fd < 0)
			die("accept: " + std::string(std::strerror(errno)));
		accepted.emplace_back(fd);
	}
	char byte = 0;
	if (::read(done[0], &byte, 1) != 1)
		die("the client child did not finish");
	::close(done[0]);
	double setupMs = msSince(setupStart);

	auto openStart = std::chrono::steady_clock::now();
	Result<SockDiag> diag = SockDiag::open(ns.get());
	double openMs = msSince(openStart);
	if (!diag.ok())
		die(diag.error().message());

	SocketFilter filter;
	filter.localPorts = {port};
	filter.states = {TcpSocketState::Established};
	std::vector<double> listTimes, listAllTimes, mapTimes, listCpu, mapCpu;
	std::vector<TcpSocketInfo> listed;
	size_t listedAll = 0;
	std::optional<SocketOwnerMap> owners;
	for (int round = 0; round < rounds; ++round) {
		auto t0 = std::chrono::steady_clock::now();
		double c0 = threadCpuMs();
		Result<std::vector<TcpSocketInfo>> r = diag->listTcp(filter);
		listTimes.push_back(msSince(t0));
		listCpu.push_back(threadCpuMs() - c0);
		if (!r.ok())
			die(r.error().message());
		listed = std::move(*r);

		t0 = std::chrono::steady_clock::now();
		Result<std::vector<TcpSocketInfo>> all = diag->listTcp();
		listAllTimes.push_back(msSince(t0));
		if (!all.ok())
			die(all.error().message());
		listedAll = all->size();

		t0 = std::chrono::steady_clock::now();
		c0 = threadCpuMs();
		Result<SocketOwnerMap> m = mapSocketOwners(::getpid());
		mapTimes.push_back(msSince(t0));
		mapCpu.push_back(threadCpuMs() - c0);
		if (!m.ok())
			die(m.error().message());
		owners.emplace(std::move(*m));
	}

	// Every listed connection must be one of ours, held by this process.
	size_t owned = 0;
	for (const TcpSocketInfo &s : listed) {
		const std::vector<SocketHolder> *h = owners->find(s.inode);
		if (h && h->front().pid == ::getpid())
			++owned;
	}

	::kill(child, SIGKILL);
	::waitpid(child, nullptr, 0);

	std::printf("{\"sockets\":%zu,\"list_ms\":%.2f,\"map_ms\":%.2f,\"listed\":%zu,\"listed_all\":%zu,"
		    "\"list_all_ms\":%.2f,\"list_cpu_ms\":%.2f,\"map_cpu_ms\":%.2f,\"fds_scanned\":%zu,"
		    "\"processes\":%zu,\"open_ms\":%.3f,\"rounds\":%d,\"setup_ms\":%.0f}\n",
		    owned, median(listTimes), median(mapTimes), listed.size(), listedAll, median(listAllTimes),
		    median(listCpu), median(mapCpu), owners->fdCount(), owners->processes().size(), openMs, rounds,
		    setupMs);
	if (owned != count || listed.size() != count || listedAll != 2 * count + 1) {
		std::fprintf(stderr, "discovery_bench: expected %zu connections, listed %zu, owned %zu, all %zu\n", count,
			     listed.size(), owned, listedAll);
		return 1;
	}
	return 0;
}
