// 10,000 flows in one batch: installed, effective, removed.
#include <doctest/doctest.h>

#include <arpa/inet.h>

#include <chrono>
#include <string>
#include <vector>

#include "connection_helpers.h"
#include "netlock/flow_lock.h"

using namespace ferry;
using namespace ferry::netlock;
using namespace ferry::test::netlock;

namespace {

constexpr size_t kFlows = 10000;

// Distinct made-up flows, half IPv4 and half IPv6, in documentation ranges.
std::vector<FlowId> manyFlows(size_t count)
{
	std::vector<FlowId> flows;
	flows.reserve(count);
	for (size_t i = 0; i < count; ++i) {
		FlowId f;
		uint16_t localPort = static_cast<uint16_t>(10000 + i / 2);
		if (i % 2 == 0) {
			f.local = endpoint("203.0.113.10", localPort);
			f.remote = endpoint("198.51.100.200", 443);
		} else {
			f.local = endpoint("2001:db8:1::10", localPort);
			f.remote = endpoint("2001:db8:2::20", 443);
		}
		flows.push_back(f);
	}
	return flows;
}

// Elements in `nft list set` output: each has three " . " separators
// (so does the "type" line above them, which is skipped).
size_t elementCount(const std::string &listing)
{
	size_t separators = 0;
	size_t start = listing.find("elements = ");
	if (start == std::string::npos)
		return 0;
	for (size_t pos = listing.find(" . ", start); pos != std::string::npos; pos = listing.find(" . ", pos + 3))
		++separators;
	return separators / 3;
}

} // namespace

TEST_CASE("10,000 flows lock in one batch, take effect, and unlock")
{
	TwoHosts hosts;
	Connection real = connectHosts(hosts, Variant::V6);
	std::vector<FlowId> flows = manyFlows(kFlows - 1);
	flows.push_back(real.flow); // the one that carries traffic, last in the batch

	FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
	auto start = std::chrono::steady_clock::now();
	Status s = lock->lock(hosts.host.netns, "scale", flows, kMark);
	auto locked = std::chrono::steady_clock::now();
	REQUIRE_MESSAGE(s.ok(), s.error().message());

	CHECK(elementCount(nft(hosts.host, "list set inet ferry_scale flows4")) == kFlows / 2);
	CHECK(elementCount(nft(hosts.host, "list set inet ferry_scale flows6")) == kFlows / 2);

	sendAll(real.client.get(), "held");
	sendAll(real.server.get(), "back");
	CHECK(receiveWithin(real.server.get(), 4, 600).empty());
	CHECK(receiveWithin(real.client.get(), 4, 600).empty());

	auto unlockStart = std::chrono::steady_clock::now();
	s = lock->unlock();
	auto unlocked = std::chrono::steady_clock::now();
	REQUIRE_MESSAGE(s.ok(), s.error().message());
	CHECK_FALSE(hasTable(hosts.host, "inet ferry_scale"));
	CHECK(receiveWithin(real.server.get(), 4, 10000) == "held");
	CHECK(receiveWithin(real.client.get(), 4, 10000) == "back");

	double lockMs = std::chrono::duration<double, std::milli>(locked - start).count();
	double unlockMs = std::chrono::duration<double, std::milli>(unlocked - unlockStart).count();
	MESSAGE("10,000 flows: lock " << lockMs << " ms, unlock " << unlockMs << " ms");
	// A generous bound: the point is one batch, not a benchmark (see
	// tests/bench/netlock for the figure).
	CHECK(lockMs < 5000);
}
