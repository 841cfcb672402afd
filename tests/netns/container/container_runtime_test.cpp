// The source side with the real runtimes: inspect, pause/resume and
// destroy of runc and podman containers made by tests/support/containers.sh.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include "base/netns.h"
#include "container/cgroup_freezer.h"
#include "container/container_runtime.h"
#include "container_host.h"

using namespace ferry;
using namespace ferry::container;
using namespace ferry::test;
using namespace std::chrono_literals;

namespace {

ino_t netnsInodeOf(const std::string &spec)
{
	auto fd = openNetns(spec);
	REQUIRE_MESSAGE(fd.ok(), fd.error().message());
	auto inode = netnsInode(fd->get());
	REQUIRE(inode.ok());
	return *inode;
}

std::string freezerState(const ContainerInfo &info)
{
	// What runc pause and podman pause use: the v1 freezer.
	std::string dir = "/sys/fs/cgroup/freezer";
	auto lines = parseProcCgroup(captureOutput("cat /proc/" + std::to_string(info.pid) + "/cgroup"));
	for (const CgroupMembership &m : lines)
		if (m.controllers == "freezer")
			return captureOutput("cat " + dir + m.path + "/freezer.state");
	return {};
}

void checkPauseResumeDestroy(const ContainerHost &host, const ContainerInfo &info)
{
	auto start = std::chrono::steady_clock::now();
	Status paused = pauseContainer(host.options(), info);
	std::printf("pause (%s): %.3f ms\n", toString(info.runtime), secondsSince(start) * 1e3);
	REQUIRE_MESSAGE(paused.ok(), paused.error().message());
	CHECK(freezerState(info) == "FROZEN\n");
	auto seen = inspectContainer(host.options(), info.runtime, info.id);
	REQUIRE(seen.ok());
	CHECK(seen->status == "paused");

	start = std::chrono::steady_clock::now();
	Status resumed = resumeContainer(host.options(), info);
	std::printf("resume (%s): %.3f ms\n", toString(info.runtime), secondsSince(start) * 1e3);
	REQUIRE_MESSAGE(resumed.ok(), resumed.error().message());
	CHECK(freezerState(info) == "THAWED\n");
	CHECK(inspectContainer(host.options(), info.runtime, info.id)->status == "running");

	// Destroyed while paused: nothing of it survives.
	REQUIRE(pauseContainer(host.options(), info).ok());
	std::vector<pid_t> pids = cgroupProcesses(info.cgroup).value();
	REQUIRE(!pids.empty());
	start = std::chrono::steady_clock::now();
	Status destroyed = destroyContainer(host.options(), info.runtime, info.id);
	std::printf("destroy (%s, paused): %.3f ms\n", toString(info.runtime), secondsSince(start) * 1e3);
	REQUIRE_MESSAGE(destroyed.ok(), destroyed.error().message());
	for (pid_t pid : pids)
		CHECK_FALSE(processAlive(pid));
	CHECK_FALSE(pathExists(info.cgroup));
	CHECK(inspectContainer(host.options(), info.runtime, info.id).error().code == ENOENT);
	// Already gone is success.
	CHECK(destroyContainer(host.options(), info.runtime, info.id).ok());
	CHECK(pauseContainer(host.options(), info).error().code == ENOENT);
}

} // namespace

TEST_CASE("runc: inspect, pause, resume, destroy paused")
{
	ContainerHost host("runc");
	std::string bundle = host.makeBundle("web", "sh -c \"sleep 1000 & exec sleep 1000\"");
	host.runRunc("web", bundle);

	auto start = std::chrono::steady_clock::now();
	auto info = inspectContainer(host.options(), Runtime::Runc, "web");
	std::printf("inspect (runc): %.3f ms\n", secondsSince(start) * 1e3);
	REQUIRE_MESSAGE(info.ok(), info.error().message());
	CHECK(std::string(toString(info->runtime)) == "runc");
	CHECK(info->id == "web");
	CHECK(info->name == "web");
	CHECK(info->status == "running");
	CHECK(info->bundle == bundle);
	CHECK(info->spec.bundle == bundle);
	CHECK(info->spec.name == "web");
	CHECK(info->annotations.at(std::string(kMigratableAnnotation)) == "true");
	REQUIRE(info->pid > 0);
	CHECK(processAlive(info->pid));
	CHECK(info->netns == "pid:" + std::to_string(info->pid));
	// Its netns is the one the bundle names (containers.sh, CT_NETNS).
	CHECK(netnsInodeOf(info->netns) == netnsInodeOf(host.host().netns));
	// runc's v2 cgroup on this hybrid host, named after the id.
	CHECK(pathExists(info->cgroup + "/cgroup.freeze"));
	CHECK(info->cgroup.size() > 4);
	CHECK(info->cgroup.compare(info->cgroup.size() - 4, 4, "/web") == 0);
	CHECK(freezerCgroupOf(info->pid).value() == info->cgroup);

	CHECK(inspectContainer(host.options(), Runtime::Runc, "nope").error().code == ENOENT);
	checkPauseResumeDestroy(host, *info);
}

TEST_CASE("runc: a created container is neither running nor paused")
{
	ContainerHost host("runcc");
	std::string bundle = host.makeBundle("early", "sleep 1000");
	mustRun("runc --root " + host.options().runcRoot + " create --bundle " + bundle + " early </dev/null >/dev/null 2>&1");
	auto info = inspectContainer(host.options(), Runtime::Runc, "early");
	REQUIRE_FALSE(info.ok());
	CHECK(info.error().code == EINVAL);
	CHECK(info.error().what.find("created") != std::string::npos);
	CHECK(destroyContainer(host.options(), Runtime::Runc, "early").ok());
	CHECK(inspectContainer(host.options(), Runtime::Runc, "early").error().code == ENOENT);
}

TEST_CASE("podman: inspect, pause, resume, destroy paused")
{
	ContainerHost host("podman");
	host.importImage("localhost/ferry-test:1");
	host.runPodman("web", "localhost/ferry-test:1", "sh -c \"sleep 1000 & exec sleep 1000\"");

	auto start = std::chrono::steady_clock::now();
	auto info = inspectContainer(host.options(), Runtime::Podman, "web");
	std::printf("inspect (podman): %.3f ms\n", secondsSince(start) * 1e3);
	REQUIRE_MESSAGE(info.ok(), info.error().message());
	CHECK(std::string(toString(info->runtime)) == "podman");
	CHECK(info->id.size() == 64);
	CHECK(info->name == "web");
	CHECK(info->status == "running");
	REQUIRE(info->pid > 0);
	CHECK(netnsInodeOf(info->netns) == netnsInodeOf(host.host().netns));
	CHECK(!info->cgroup.empty());
	CHECK(info->annotations.at(std::string(kMigratableAnnotation)) == "true");
	CHECK(info->spec.name == "web");
	CHECK(info->spec.image == "localhost/ferry-test:1");
	CHECK(info->spec.command == std::vector<std::string>{"sh", "-c", "sleep 1000 & exec sleep 1000"});
	CHECK(info->spec.annotations.at(std::string(kMigratableAnnotation)) == "true");

	// By a prefix of its id, as podman allows.
	CHECK(inspectContainer(host.options(), Runtime::Podman, info->id.substr(0, 12))->name == "web");
	CHECK(inspectContainer(host.options(), Runtime::Podman, "nope").error().code == ENOENT);
	checkPauseResumeDestroy(host, *info);
}
