#include <doctest/doctest.h>

#include "container/container.h"

using namespace ferry::container;

TEST_CASE("runtime names round-trip, and nothing else parses")
{
	for (Runtime r : {Runtime::Runc, Runtime::Podman}) {
		auto parsed = parseRuntime(toString(r));
		REQUIRE(parsed.has_value());
		CHECK(std::string(toString(*parsed)) == toString(r));
	}
	CHECK(std::string(toString(Runtime::Runc)) == "runc");
	CHECK(std::string(toString(Runtime::Podman)) == "podman");
	CHECK_FALSE(parseRuntime("").has_value());
	CHECK_FALSE(parseRuntime("Runc").has_value());
	CHECK_FALSE(parseRuntime("crun").has_value());
	CHECK_FALSE(parseRuntime("podman ").has_value());
}

TEST_CASE("a spec whose values a runtime would read as options or mount syntax is refused, naming the field")
{
	ContainerSpec ok;
	ok.runtime = Runtime::Podman;
	ok.name = "web";
	ok.image = "localhost/web:1";
	ok.command = {"/bin/sh", "-c", "x"};
	ok.workingDirectory = "/srv";
	ok.user = "1000:1000";
	ok.mounts = {{"/srv/data", "/data", true}};
	CHECK_FALSE(findUnsafeArgument(ok).has_value());

	auto refused = [&](auto change) {
		ContainerSpec spec = ok;
		change(spec);
		auto problem = findUnsafeArgument(spec);
		REQUIRE(problem.has_value());
		return problem->field;
	};
	CHECK(refused([](ContainerSpec &s) { s.image = "--help"; }) == "image");
	CHECK(refused([](ContainerSpec &s) { s.name = "-x"; }) == "name");
	CHECK(refused([](ContainerSpec &s) { s.user = "--privileged"; }) == "user");
	CHECK(refused([](ContainerSpec &s) { s.workingDirectory = "-w"; }) == "workingDirectory");
	CHECK(refused([](ContainerSpec &s) { s.command = {"--rm"}; }) == "command[0]");
	CHECK(refused([](ContainerSpec &s) { s.bundle = "-b"; }) == "bundle");
	CHECK(refused([](ContainerSpec &s) { s.mounts[0].destination = "/x:U"; }) == "mounts[0].destination");
	CHECK(refused([](ContainerSpec &s) { s.mounts[0].source = "/a,b"; }) == "mounts[0].source");
	CHECK(refused([](ContainerSpec &s) { s.mounts[0].source = "/srv/../etc"; }) == "mounts[0].source");
	CHECK(refused([](ContainerSpec &s) { s.mounts[0].destination = "/data/.."; }) == "mounts[0].destination");
	CHECK(refused([](ContainerSpec &s) { s.mounts[0].source = "relative"; }) == "mounts[0].source");
	// ".." inside a name is not a component.
	ok.mounts[0].source = "/srv/..data/a..b";
	CHECK_FALSE(findUnsafeArgument(ok).has_value());
}
