// The pure half of cgroup_freezer: /proc/<pid>/cgroup and mountinfo as
// this hybrid host writes them (fixtures recorded from a runc container).
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "container/cgroup_freezer.h"

using namespace ferry::container;

namespace {

std::string fixture(const std::string &name)
{
	std::ifstream in(std::string(FERRY_CONTAINER_FIXTURES) + "/" + name);
	REQUIRE(in.good());
	std::stringstream s;
	s << in.rdbuf();
	return s.str();
}

} // namespace

TEST_CASE("/proc/<pid>/cgroup: v1 controllers and the v2 line")
{
	auto lines = parseProcCgroup(fixture("proc_cgroup_runc.txt"));
	REQUIRE(lines.size() == 10);
	CHECK(lines[0].hierarchy == 9);
	CHECK(lines[0].controllers == "name=systemd");
	CHECK(lines[0].path == "/t2");
	CHECK(lines.back().hierarchy == 0);
	CHECK(lines.back().controllers.empty());
	CHECK(lines.back().path == "/t2");
	// A path may hold colons: only the first two separate fields.
	auto odd = parseProcCgroup("6:freezer:/a:b\nbroken line\n0::/\n");
	REQUIRE(odd.size() == 2);
	CHECK(odd[0].path == "/a:b");
	CHECK(odd[1].path == "/");
}

TEST_CASE("mountinfo: cgroup mounts only, with their super options and escapes")
{
	auto mounts = parseCgroupMounts(fixture("mountinfo_hybrid.txt"));
	int v2 = 0, freezer = 0;
	for (const CgroupMount &m : mounts) {
		v2 += m.v2;
		if (m.options.find("freezer") != std::string::npos) {
			freezer++;
			CHECK(m.mountPoint == "/sys/fs/cgroup/freezer");
		}
	}
	CHECK(v2 == 1);
	CHECK(freezer == 1);
	auto escaped = parseCgroupMounts(
		"50 1 0:40 /outer /mnt/my\\040cgroups rw shared:5 - cgroup2 cgroup2 rw,nsdelegate\n"
		"51 1 0:41 / /proc rw - proc proc rw\n");
	REQUIRE(escaped.size() == 1);
	CHECK(escaped[0].mountPoint == "/mnt/my cgroups");
	CHECK(escaped[0].root == "/outer");
	CHECK(escaped[0].v2);
	CHECK(escaped[0].options == "rw,nsdelegate");
}

TEST_CASE("freezer candidates: v2 first, then the v1 freezer, never a root cgroup")
{
	auto mounts = parseCgroupMounts(fixture("mountinfo_hybrid.txt"));
	auto candidates = freezerCandidates(parseProcCgroup(fixture("proc_cgroup_runc.txt")), mounts);
	REQUIRE(candidates.size() == 2);
	CHECK(candidates[0] == "/sys/fs/cgroup/unified/t2");
	CHECK(candidates[1] == "/sys/fs/cgroup/freezer/t2");

	// A process in the v2 root but in a v1 freezer cgroup of its own.
	auto v1Only = freezerCandidates(parseProcCgroup("6:freezer:/ferry/x\n4:memory:/m\n0::/\n"), mounts);
	REQUIRE(v1Only.size() == 1);
	CHECK(v1Only[0] == "/sys/fs/cgroup/freezer/ferry/x");

	CHECK(freezerCandidates(parseProcCgroup("6:freezer:/\n0::/\n"), mounts).empty());

	// Inside a cgroup namespace the mount's root is cut off the path; a
	// cgroup outside what the mount shows is not reachable.
	auto nsMounts = parseCgroupMounts("30 1 0:26 /kubepods /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n");
	auto inside = freezerCandidates(parseProcCgroup("0::/kubepods/pod1/c1\n"), nsMounts);
	REQUIRE(inside.size() == 1);
	CHECK(inside[0] == "/sys/fs/cgroup/pod1/c1");
	CHECK(freezerCandidates(parseProcCgroup("0::/other/c1\n"), nsMounts).empty());
	CHECK(freezerCandidates(parseProcCgroup("0::/kubepodsX/c1\n"), nsMounts).empty());
}
