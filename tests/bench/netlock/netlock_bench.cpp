// The flow lock at scale: N flows locked in one nftables batch in a
// namespace of our own, then unlocked.
//
//   sudo build/tests/bench/netlock/netlock_bench [--flows N] [--rounds R]
//        [--strategy drop-both-ways|drop-inbound] [--family mixed|v4|v6]
//
// Prints one JSON line:
//   {"flows":N,"lock_ms":..,"unlock_ms":..,...}
// lock_ms     FlowLock::lock(): validation, encoding, batch building, entering
//             the namespace, the kernel's commit and its acks; median of R
// unlock_ms   FlowLock::unlock() (one DELTABLE), median of R
// release_ms  destroying the FlowLock after unlock: closing its netlink
//             socket waits for the kernel's RCU cleanup of the deleted
//             table; off the critical path, median of R
// *_min_ms    the fastest of the R rounds
// The flows are made up (documentation addresses); the kernel's work does
// not depend on whether sockets exist for them.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "netlock/flow_lock.h"
#include "test_network.h"

using namespace ferry;
using namespace ferry::netlock;

namespace {

constexpr uint32_t kMark = 0x66657272;

enum class Family { Mixed, V4, V6 };

Endpoint makeEndpoint(const std::string &text)
{
	Result<Endpoint> e = Endpoint::parse(text);
	if (!e.ok()) {
		std::fprintf(stderr, "netlock_bench: %s\n", e.error().message().c_str());
		std::abort();
	}
	return *e;
}

// Distinct flows: the local port and the low bits of the remote address vary.
std::vector<FlowId> makeFlows(size_t count, Family family)
{
	std::vector<FlowId> flows;
	flows.reserve(count);
	for (size_t i = 0; i < count; ++i) {
		bool v4 = family == Family::V4 || (family == Family::Mixed && i % 2 == 0);
		std::string port = std::to_string(1024 + i % 60000);
		std::string host = std::to_string(1 + i / 60000);
		if (v4)
			flows.push_back({makeEndpoint("203.0.113.10:" + port), makeEndpoint("198.51.100." + host + ":443")});
		else
			flows.push_back({makeEndpoint("[2001:db8:1::10]:" + port), makeEndpoint("[2001:db8:2::" + host + "]:443")});
	}
	return flows;
}

double median(std::vector<double> v)
{
	std::sort(v.begin(), v.end());
	return v.empty() ? 0 : v[v.size() / 2];
}

int usage()
{
	std::fprintf(stderr, "usage: netlock_bench [--flows N] [--rounds R] [--strategy drop-both-ways|drop-inbound]"
	                     " [--family mixed|v4|v6]\n");
	return 2;
}

} // namespace

int main(int argc, char **argv)
{
	size_t flowCount = 10000;
	int rounds = 5;
	LockStrategy strategy = LockStrategy::DropBothWays;
	Family family = Family::Mixed;
	std::string familyName = "mixed";
	for (int i = 1; i < argc; ++i) {
		std::string arg = argv[i];
		if (i + 1 >= argc)
			return usage();
		std::string value = argv[++i];
		if (arg == "--flows") {
			flowCount = std::strtoul(value.c_str(), nullptr, 10);
		} else if (arg == "--rounds") {
			rounds = std::max(1, std::atoi(value.c_str()));
		} else if (arg == "--strategy") {
			auto s = parseLockStrategy(value);
			if (!s)
				return usage();
			strategy = *s;
		} else if (arg == "--family") {
			familyName = value;
			if (value == "mixed")
				family = Family::Mixed;
			else if (value == "v4")
				family = Family::V4;
			else if (value == "v6")
				family = Family::V6;
			else
				return usage();
		} else {
			return usage();
		}
	}
	if (::geteuid() != 0) {
		std::fprintf(stderr, "netlock_bench needs root (network namespaces, nftables)\n");
		return 77;
	}

	std::vector<FlowId> flows = makeFlows(flowCount, family);
	// The TestNetwork removes its namespace, and the lock tables in it, when
	// main returns, also after a failed round.
	test::TestNetwork net;
	const test::TestHost host = net.addIsolatedHost("bench");
	std::vector<double> lockMs;
	std::vector<double> unlockMs;
	std::vector<double> releaseMs;
	for (int round = 0; round < rounds; ++round) {
		FlowLockPtr lock = makeFlowLock(strategy);
		std::string id = "bench-" + std::to_string(round);
		auto t0 = std::chrono::steady_clock::now();
		Status s = lock->lock(host.netns, id, flows, kMark);
		auto t1 = std::chrono::steady_clock::now();
		if (!s.ok()) {
			std::fprintf(stderr, "netlock_bench: %s\n", s.error().message().c_str());
			return 1;
		}
		s = lock->unlock();
		auto t2 = std::chrono::steady_clock::now();
		if (!s.ok()) {
			std::fprintf(stderr, "netlock_bench: %s\n", s.error().message().c_str());
			return 1;
		}
		lock.reset();
		auto t3 = std::chrono::steady_clock::now();
		lockMs.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
		releaseMs.push_back(std::chrono::duration<double, std::milli>(t3 - t2).count());
		unlockMs.push_back(std::chrono::duration<double, std::milli>(t2 - t1).count());
	}
	std::printf("{\"flows\":%zu,\"lock_ms\":%.2f,\"unlock_ms\":%.2f,\"release_ms\":%.2f,\"lock_min_ms\":%.2f,"
	            "\"unlock_min_ms\":%.2f,\"rounds\":%d,\"strategy\":\"%s\",\"family\":\"%s\"}\n",
	            flowCount, median(lockMs), median(unlockMs), median(releaseMs), *std::min_element(lockMs.begin(), lockMs.end()),
	            *std::min_element(unlockMs.begin(), unlockMs.end()), rounds,
	            std::string(strategyName(strategy)).c_str(), familyName.c_str());
	return 0;
}
