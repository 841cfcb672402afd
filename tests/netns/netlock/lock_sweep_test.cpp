// Crash recovery: listLocks, removeLock and sweep find ferry's tables by
// the ownership rule (lock_table.h) and never touch anything else.
#include <doctest/doctest.h>

#include <algorithm>
#include <ctime>
#include <string>
#include <vector>

#include "connection_helpers.h"
#include "netlock/flow_lock.h"
#include "netlock/lock_sweep.h"

using namespace ferry;
using namespace ferry::netlock;
using namespace ferry::test::netlock;
using ferry::test::TestHost;

namespace {

std::vector<FlowId> someFlows()
{
	return {FlowId{endpoint(kHostV4, 1000), endpoint(kPeerV4, 80)},
	        FlowId{endpoint(kHostV6, 1000), endpoint(kPeerV6, 80)}};
}

// Installs a lock and "crashes": the FlowLock goes away without unlock.
void leaveLock(const TestHost &host, const std::string &id)
{
	FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
	std::vector<FlowId> flows = someFlows();
	Status s = lock->lock(host.netns, id, flows, kMark);
	REQUIRE_MESSAGE(s.ok(), s.error().message());
}

// Tables that look like ferry's but are not: sweep must leave them.
void addForeignTables(const TestHost &host)
{
	test::mustRun(host.exec("nft add table inet ferry_foreign"));                         // prefix, no comment
	test::mustRun(host.exec("nft add table ip ferry_dead-1"));                           // ferry name, other family
	test::mustRun(host.exec("nft add table inet ferry_liar '{ comment \"ferry migration=other "
	                        "created=2024-05-01T12:00:00Z\"; }'"));                      // comment names another id
	test::mustRun(host.exec("nft add table inet ferry_plain '{ comment \"ours, keep\"; }'")); // foreign comment
	test::mustRun(host.exec("nft add table inet notferry '{ comment \"ferry migration=notferry "
	                        "created=2024-05-01T12:00:00Z\"; }'"));                      // comment, no prefix
}

const std::vector<std::string> kForeign = {"inet ferry_foreign", "ip ferry_dead-1", "inet ferry_liar",
                                           "inet ferry_plain", "inet notferry"};

} // namespace

TEST_CASE("sweep removes dead migrations' locks and leaves live locks and foreign tables")
{
	test::TestNetwork net;
	TestHost host = net.addIsolatedHost("a");
	addForeignTables(host);
	std::time_t before = std::time(nullptr);
	leaveLock(host, "live-1");
	leaveLock(host, "dead-1");
	leaveLock(host, "dead-2");

	Result<std::vector<LockInfo>> locks = listLocks(host.netns);
	REQUIRE(locks.ok());
	std::vector<std::string> ids;
	for (const LockInfo &l : *locks) {
		ids.push_back(l.migrationId);
		CHECK(l.table == "ferry_" + l.migrationId);
		CHECK(l.handle != 0);
		CHECK(l.created >= before - 1);
		CHECK(l.created <= std::time(nullptr) + 1);
	}
	std::sort(ids.begin(), ids.end());
	CHECK(ids == std::vector<std::string>{"dead-1", "dead-2", "live-1"});

	std::vector<std::string> live{"live-1", "not-locked-here"};
	Result<std::vector<std::string>> swept = sweep(host.netns, live);
	REQUIRE_MESSAGE(swept.ok(), swept.error().message());
	std::sort(swept->begin(), swept->end());
	CHECK(*swept == std::vector<std::string>{"dead-1", "dead-2"});

	CHECK(hasTable(host, "inet ferry_live-1"));
	CHECK_FALSE(hasTable(host, "inet ferry_dead-1"));
	CHECK_FALSE(hasTable(host, "inet ferry_dead-2"));
	for (const std::string &t : kForeign) {
		CAPTURE(t);
		CHECK(hasTable(host, t));
	}
	// The live lock is intact, not just present.
	CHECK(nft(host, "list chain inet ferry_live-1 input").find("@flows4") != std::string::npos);

	// Nothing dead is left, so a second sweep removes nothing.
	Result<std::vector<std::string>> again = sweep(host.netns, live);
	REQUIRE(again.ok());
	CHECK(again->empty());

	// With no live migration at all, only ferry's last table goes.
	Result<std::vector<std::string>> all = sweep(host.netns, {});
	REQUIRE(all.ok());
	CHECK(*all == std::vector<std::string>{"live-1"});
	for (const std::string &t : kForeign)
		CHECK(hasTable(host, t));
}

TEST_CASE("removeLock removes one migration's lock and refuses foreign tables")
{
	test::TestNetwork net;
	TestHost host = net.addIsolatedHost("a");
	addForeignTables(host);
	leaveLock(host, "one");
	leaveLock(host, "two");

	REQUIRE(removeLock(host.netns, "one").ok());
	CHECK_FALSE(hasTable(host, "inet ferry_one"));
	CHECK(hasTable(host, "inet ferry_two"));

	Status again = removeLock(host.netns, "one");
	REQUIRE_FALSE(again.ok());
	CHECK(again.error().code == ENOENT);

	// ferry_foreign has ferry's name but not its comment: not a lock.
	Status foreign = removeLock(host.netns, "foreign");
	REQUIRE_FALSE(foreign.ok());
	CHECK(foreign.error().code == ENOENT);
	CHECK(foreign.error().context.find("migration=foreign") != std::string::npos);
	CHECK(foreign.error().context.find("netns=" + host.netns) != std::string::npos);
	for (const std::string &t : kForeign)
		CHECK(hasTable(host, t));

	Status bad = removeLock(host.netns, "a/b");
	REQUIRE_FALSE(bad.ok());
	CHECK(bad.error().code == EINVAL);
	REQUIRE(removeLock(host.netns, "two").ok());
}

TEST_CASE("sweep and listLocks name the namespace they could not open")
{
	Result<std::vector<std::string>> s = sweep("ferry-no-such-netns", {});
	REQUIRE_FALSE(s.ok());
	CHECK(s.error().code == ENOENT);
	CHECK(s.error().context.find("netns=ferry-no-such-netns") != std::string::npos);
	Result<std::vector<LockInfo>> l = listLocks("ferry-no-such-netns");
	REQUIRE_FALSE(l.ok());
	CHECK(l.error().context.find("phase=list locks") != std::string::npos);
}
