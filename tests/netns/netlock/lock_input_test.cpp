// Bad input and refused locks: a clear error that names the netns and the
// migration, and nothing installed.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "connection_helpers.h"
#include "netlock/flow_lock.h"
#include "netlock/lock_sweep.h"
#include "netlock/lock_table.h"

using namespace ferry;
using namespace ferry::netlock;
using namespace ferry::test::netlock;
using ferry::test::TestHost;

namespace {

std::vector<FlowId> oneFlow()
{
	return {FlowId{endpoint(kHostV4, 1000), endpoint(kPeerV4, 80)}};
}

size_t ferryTableCount(const TestHost &host)
{
	std::string tables = nft(host, "list tables");
	size_t count = 0;
	for (size_t pos = tables.find("ferry_"); pos != std::string::npos; pos = tables.find("ferry_", pos + 1))
		++count;
	return count;
}

void checkNamed(const Error &e, const std::string &netns, const std::string &id)
{
	INFO(e.message());
	CHECK(e.context.find("netns=" + netns) != std::string::npos);
	CHECK(e.context.find("migration=" + id) != std::string::npos);
	CHECK(e.context.find("phase=lock") != std::string::npos);
}

} // namespace

TEST_CASE("bad migration ids are refused before anything is installed")
{
	test::TestNetwork net;
	TestHost host = net.addIsolatedHost("a");
	std::vector<FlowId> flows = oneFlow();
	for (std::string id : {std::string(), std::string("a b"), std::string("a/b"), std::string("x;flush ruleset"),
	                       std::string("dot.ted"), std::string(kMaxMigrationIdLength + 1, 'x')}) {
		CAPTURE(id);
		FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
		Status s = lock->lock(host.netns, id, flows, kMark);
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().code == EINVAL);
		checkNamed(s.error(), host.netns, id);
		CHECK_FALSE(lock->isLocked());
	}
	CHECK(ferryTableCount(host) == 0);
}

TEST_CASE("a zero mark, an unusable flow or a missing namespace is refused with a clear error")
{
	test::TestNetwork net;
	TestHost host = net.addIsolatedHost("a");
	FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
	std::vector<FlowId> flows = oneFlow();

	Status zeroMark = lock->lock(host.netns, "m1", flows, 0);
	REQUIRE_FALSE(zeroMark.ok());
	CHECK(zeroMark.error().code == EINVAL);
	CHECK(zeroMark.error().what.find("mark 0") != std::string::npos);
	checkNamed(zeroMark.error(), host.netns, "m1");

	std::vector<FlowId> mixed = flows;
	mixed.push_back(FlowId{endpoint(kHostV4, 1001), endpoint(kPeerV6, 80)});
	Status badFlow = lock->lock(host.netns, "m1", mixed, kMark);
	REQUIRE_FALSE(badFlow.ok());
	CHECK(badFlow.error().code == EINVAL);
	CHECK(badFlow.error().context.find("flow=198.51.100.1:1001->[2001:db8::2]:80") != std::string::npos);
	checkNamed(badFlow.error(), host.netns, "m1");

	Status noNetns = lock->lock("ferry-no-such-netns", "m1", flows, kMark);
	REQUIRE_FALSE(noNetns.ok());
	CHECK(noNetns.error().code == ENOENT);
	checkNamed(noNetns.error(), "ferry-no-such-netns", "m1");

	Status unlockFirst = lock->unlock();
	REQUIRE_FALSE(unlockFirst.ok());
	CHECK(unlockFirst.error().code == EINVAL);
	CHECK(ferryTableCount(host) == 0);
}

TEST_CASE("a second lock for the same migration is refused and the first stays intact")
{
	test::TestNetwork net;
	TestHost host = net.addIsolatedHost("a");
	std::vector<FlowId> flows = oneFlow();
	FlowLockPtr first = makeFlowLock(LockStrategy::DropBothWays);
	REQUIRE(first->lock(host.netns, "twice", flows, kMark).ok());
	std::string installed = nft(host, "list table inet ferry_twice");

	// Same object: refused before the kernel is asked.
	Status busy = first->lock(host.netns, "other", flows, kMark);
	REQUIRE_FALSE(busy.ok());
	CHECK(busy.error().code == EBUSY);

	// Another object, same id: the kernel refuses the table (EEXIST) and the
	// whole batch with it.
	std::vector<FlowId> more = flows;
	more.push_back(FlowId{endpoint(kHostV6, 7), endpoint(kPeerV6, 8)});
	FlowLockPtr second = makeFlowLock(LockStrategy::DropBothWays);
	Status exists = second->lock(host.netns, "twice", more, kMark);
	REQUIRE_FALSE(exists.ok());
	CHECK(exists.error().code == EEXIST);
	CHECK(exists.error().what.find("create table inet ferry_twice") != std::string::npos);
	checkNamed(exists.error(), host.netns, "twice");
	CHECK_FALSE(second->isLocked());
	CHECK(nft(host, "list table inet ferry_twice") == installed);

	REQUIRE(first->unlock().ok());
	CHECK(ferryTableCount(host) == 0);
}

TEST_CASE("a foreign table with the lock's name is neither merged into nor removed")
{
	test::TestNetwork net;
	TestHost host = net.addIsolatedHost("a");
	test::mustRun(host.exec("nft add table inet ferry_taken"));
	test::mustRun(host.exec("nft 'add chain inet ferry_taken keep { type filter hook input priority 0; }'"));
	std::string before = nft(host, "list ruleset");

	FlowLockPtr lock = makeFlowLock(LockStrategy::DropInbound);
	std::vector<FlowId> flows = oneFlow();
	Status s = lock->lock(host.netns, "taken", flows, kMark);
	REQUIRE_FALSE(s.ok());
	CHECK(s.error().code == EEXIST);
	CHECK(nft(host, "list ruleset") == before);

	Result<std::vector<std::string>> swept = sweep(host.netns, {});
	REQUIRE(swept.ok());
	CHECK(swept->empty());
	CHECK(nft(host, "list ruleset") == before);
}

TEST_CASE("an empty flow list installs an empty lock, and duplicate flows are one element")
{
	test::TestNetwork net;
	TestHost host = net.addIsolatedHost("a");
	FlowLockPtr empty = makeFlowLock(LockStrategy::DropBothWays);
	REQUIRE(empty->lock(host.netns, "empty", {}, kMark).ok());
	CHECK(nft(host, "list set inet ferry_empty flows4").find("elements") == std::string::npos);
	REQUIRE(empty->unlock().ok());

	std::vector<FlowId> twice = oneFlow();
	twice.push_back(twice.front());
	FlowLockPtr dup = makeFlowLock(LockStrategy::DropBothWays);
	Status s = dup->lock(host.netns, "dup", twice, kMark);
	REQUIRE_MESSAGE(s.ok(), s.error().message());
	std::string set = nft(host, "list set inet ferry_dup flows4");
	CHECK(set.find("198.51.100.1 . 1000 . 198.51.100.2 . 80") != std::string::npos);
	CHECK(set.find(",") == std::string::npos);
	REQUIRE(dup->unlock().ok());
}
