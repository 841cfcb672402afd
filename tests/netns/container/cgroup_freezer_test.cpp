// The cgroup freezer on this hybrid host: spinning processes in a v1
// freezer cgroup and in a v2 cgroup made for the test, and a runc
// container with several processes. Frozen means their CPU time stops.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "container/cgroup_freezer.h"
#include "container/container_runtime.h"
#include "container_host.h"

using namespace ferry;
using namespace ferry::container;
using namespace ferry::test;
using namespace std::chrono_literals;

namespace {

std::string mountOf(bool v2)
{
	std::ifstream in("/proc/self/mountinfo");
	std::stringstream s;
	s << in.rdbuf();
	for (const CgroupMount &m : parseCgroupMounts(s.str()))
		if (m.v2 == v2 && (v2 || m.options.find("freezer") != std::string::npos))
			return m.mountPoint;
	FAIL("no " << (v2 ? "cgroup2" : "v1 freezer") << " mount on this host");
	return {};
}

// CPU ticks the spinners get in `window`.
unsigned long long ticksDuring(const Spinners &spinners, std::chrono::milliseconds window)
{
	unsigned long long before = spinners.cpuTicks();
	std::this_thread::sleep_for(window);
	return spinners.cpuTicks() - before;
}

void freezeThawFreeze(const std::string &mount)
{
	ScratchCgroup cgroup(mount);
	Spinners spinners(4, cgroup.dir());

	// freezerCgroupOf finds the scratch cgroup from /proc/<pid>/cgroup.
	auto found = freezerCgroupOf(spinners.pids()[0]);
	REQUIRE(found.ok());
	CHECK(*found == cgroup.dir());
	auto members = cgroupProcesses(cgroup.dir());
	REQUIRE(members.ok());
	CHECK(members->size() == 4);

	CHECK(ticksDuring(spinners, 300ms) > 0);
	for (int round = 0; round < 2; round++) {
		CAPTURE(round);
		auto start = std::chrono::steady_clock::now();
		Status frozen = freezeCgroup(cgroup.dir(), 2000ms);
		double took = secondsSince(start);
		REQUIRE_MESSAGE(frozen.ok(), frozen.error().message());
		std::printf("freeze of 4 spinning processes (%s): %.3f ms\n", mount.c_str(), took * 1e3);
		CHECK(isFrozen(cgroup.dir()).value());
		CHECK(ticksDuring(spinners, 300ms) == 0);
		// Again: already frozen is success.
		CHECK(freezeCgroup(cgroup.dir(), 100ms).ok());

		start = std::chrono::steady_clock::now();
		REQUIRE(thawCgroup(cgroup.dir()).ok());
		std::printf("thaw (%s): %.3f ms\n", mount.c_str(), secondsSince(start) * 1e3);
		CHECK_FALSE(isFrozen(cgroup.dir()).value());
		CHECK(ticksDuring(spinners, 300ms) > 0);
	}
	CHECK(thawCgroup(cgroup.dir()).ok());
}

} // namespace

TEST_CASE("v1 freezer: freeze, thaw and freeze again")
{
	freezeThawFreeze(mountOf(false));
}

TEST_CASE("cgroup2 cgroup.freeze: freeze, thaw and freeze again")
{
	freezeThawFreeze(mountOf(true));
}

TEST_CASE("a freeze that does not finish in time leaves the cgroup thawed")
{
	for (bool v2 : {false, true}) {
		CAPTURE(v2);
		ScratchCgroup cgroup(mountOf(v2));
		Spinners spinners(6, cgroup.dir());
		// A zero timeout looks once right after asking; six spinners on
		// two cores are not all frozen by then, almost always. What must
		// hold every time: a timed-out freeze thaws.
		int timedOut = 0;
		for (int attempt = 0; attempt < 20 && timedOut < 3; attempt++) {
			Status frozen = freezeCgroup(cgroup.dir(), 0ms);
			if (frozen.ok()) {
				REQUIRE(thawCgroup(cgroup.dir()).ok());
				continue;
			}
			timedOut++;
			CHECK(frozen.error().code == ETIMEDOUT);
			CHECK(frozen.error().context.find(cgroup.dir()) != std::string::npos);
			CHECK_FALSE(isFrozen(cgroup.dir()).value());
			CHECK(ticksDuring(spinners, 200ms) > 0);
		}
		CHECK(timedOut > 0);
	}
}

TEST_CASE("a cgroup without a freezer, and a process in none")
{
	CHECK(freezeCgroup("/nonexistent/ferry", 10ms).error().code == ENOENT);
	CHECK(freezerCgroupOf(999999999).error().code == ENOENT);
	// This test process sits in the root of both hierarchies here (the
	// CI runner may put it elsewhere, then it has a cgroup to freeze).
	auto self = freezerCgroupOf(::getpid());
	if (!self.ok())
		CHECK(self.error().code == ENOENT);
}

TEST_CASE("a runc container with several processes: frozen by its cgroup, then destroyed frozen")
{
	ContainerHost host("freeze");
	std::string bundle = host.makeBundle("spin", "sh -c \"sleep 1000 & sleep 1000 & while :; do :; done\"");
	host.runRunc("spin", bundle);

	auto start = std::chrono::steady_clock::now();
	auto info = inspectContainer(host.options(), Runtime::Runc, "spin");
	std::printf("inspect (runc): %.3f ms\n", secondsSince(start) * 1e3);
	REQUIRE_MESSAGE(info.ok(), info.error().message());
	REQUIRE(!info->cgroup.empty());
	// runc makes a v2 cgroup next to its v1 ones on a hybrid host; it has
	// cgroup.freeze, so it is the one chosen.
	CHECK(pathExists(info->cgroup + "/cgroup.freeze"));

	std::vector<pid_t> pids;
	for (int i = 0; i < 50 && pids.size() < 3; i++) {
		pids = cgroupProcesses(info->cgroup).value();
		std::this_thread::sleep_for(20ms);
	}
	REQUIRE(pids.size() == 3);

	start = std::chrono::steady_clock::now();
	Status frozen = freezeCgroup(info->cgroup, 2000ms);
	double freezeMs = secondsSince(start) * 1e3;
	REQUIRE_MESSAGE(frozen.ok(), frozen.error().message());
	start = std::chrono::steady_clock::now();
	REQUIRE(thawCgroup(info->cgroup).ok());
	double thawMs = secondsSince(start) * 1e3;
	std::printf("container of 3 processes: freeze %.3f ms, thaw %.3f ms\n", freezeMs, thawMs);
	REQUIRE(freezeCgroup(info->cgroup, 2000ms).ok());

	// Destroy it frozen: nothing survives and its cgroup goes.
	start = std::chrono::steady_clock::now();
	Status destroyed = destroyContainer(host.options(), Runtime::Runc, "spin");
	std::printf("destroy (runc, frozen): %.3f ms\n", secondsSince(start) * 1e3);
	REQUIRE_MESSAGE(destroyed.ok(), destroyed.error().message());
	for (pid_t pid : pids)
		CHECK_FALSE(processAlive(pid));
	CHECK_FALSE(pathExists(info->cgroup));
	CHECK(inspectContainer(host.options(), Runtime::Runc, "spin").error().code == ENOENT);
}
