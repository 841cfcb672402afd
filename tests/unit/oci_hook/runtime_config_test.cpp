// ferryd's "runtimes" config: file fields, flags, strictness, and the
// example file in configs/.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>
#include <vector>

#include "api/agent_config.h"

using namespace ferry;
using namespace ferry::api;

namespace {

Result<AgentArguments> parse(std::vector<std::string> args)
{
	std::vector<const char *> argv = {"ferryd", "--insecure-plain-http"};
	for (const auto &a : args)
		argv.push_back(a.c_str());
	return parseAgentArguments(static_cast<int>(argv.size()), argv.data());
}

std::string fileError(const std::string &json)
{
	auto r = parseAgentConfig(json);
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == EINVAL);
	return r.error().what;
}

} // namespace

TEST_CASE("without a runtimes section, the runtimes' own defaults")
{
	auto c = parseAgentConfig("{}");
	REQUIRE(c.ok());
	CHECK(c->runtimes.runcBinary == "runc");
	CHECK(c->runtimes.runcRoot.empty());
	CHECK(c->runtimes.podmanBinary == "podman");
	CHECK(c->runtimes.podmanRoot.empty());
	CHECK(c->runtimes.podmanRunRoot.empty());
	CHECK(c->runtimes.podmanExtraArgs.empty());
}

TEST_CASE("every runtimes field from the file")
{
	auto c = parseAgentConfig(R"({"runtimes": {
		"runc_binary": "/usr/sbin/runc", "runc_root": "/run/ferry/runc",
		"podman_binary": "/usr/bin/podman", "podman_root": "/var/lib/ferry/podman",
		"podman_runroot": "/run/ferry/podman",
		"podman_run_args": ["--ulimit", "nofile=1024:1024"],
		"podman_global_args": ["--events-backend", "file"]}})");
	REQUIRE_MESSAGE(c.ok(), c.error().message());
	CHECK(c->runtimes.podmanGlobalArgs == std::vector<std::string>{"--events-backend", "file"});
	CHECK(c->runtimes.runcBinary == "/usr/sbin/runc");
	CHECK(c->runtimes.runcRoot == "/run/ferry/runc");
	CHECK(c->runtimes.podmanBinary == "/usr/bin/podman");
	CHECK(c->runtimes.podmanRoot == "/var/lib/ferry/podman");
	CHECK(c->runtimes.podmanRunRoot == "/run/ferry/podman");
	CHECK(c->runtimes.podmanExtraArgs == std::vector<std::string>{"--ulimit", "nofile=1024:1024"});
}

TEST_CASE("the runtimes section is strict")
{
	CHECK(fileError(R"({"runtimes": {"crun_binary": "crun"}})") == "runtimes.crun_binary: unknown field");
	CHECK(fileError(R"({"runtimes": []})") == "runtimes: expected object");
	CHECK(fileError(R"({"runtimes": {"runc_binary": 1}})") == "runtimes.runc_binary: expected string");
	CHECK(fileError(R"({"runtimes": {"runc_binary": ""}})").find("runtimes.runc_binary: must not be empty") == 0);
	CHECK(fileError(R"({"runtimes": {"runc_root": "relative"}})").find("runtimes.runc_root: expected an absolute") == 0);
	CHECK(fileError(R"({"runtimes": {"podman_root": "x"}})").find("runtimes.podman_root") == 0);
	CHECK(fileError(R"({"runtimes": {"podman_runroot": "x"}})").find("runtimes.podman_runroot") == 0);
	CHECK(fileError(R"({"runtimes": {"podman_run_args": "--ulimit"}})") ==
	      "runtimes.podman_run_args: expected array of strings");
	CHECK(fileError(R"({"runtimes": {"podman_global_args": {}}})") ==
	      "runtimes.podman_global_args: expected array of strings");
	CHECK(fileError(R"({"runtimes": {"podman_run_args": ["a", 2]}})") ==
	      "runtimes.podman_run_args[1]: expected string");
	CHECK(fileError(R"({"runtimes": {"runc_root": "/a", "runc_root": "/b"}})") == "runtimes.runc_root: duplicate field");
}

TEST_CASE("every runtimes field has a flag, and flags override the file")
{
	char name[] = "/tmp/ferry-runtime-config-XXXXXX";
	int fd = ::mkstemp(name);
	REQUIRE(fd >= 0);
	::close(fd);
	std::string path = name;
	std::ofstream(path) << R"({"runtimes": {"runc_root": "/from/file", "podman_run_args": ["--from-file"]}})";

	auto a = parse({"--config", path, "--runc-binary", "/opt/runc", "--runc-root=/run/a", "--podman-binary",
			"/opt/podman", "--podman-root", "/var/a", "--podman-runroot", "/run/pa", "--podman-run-arg",
			"--ulimit", "--podman-run-arg=nofile=1024:1024", "--podman-global-arg", "--events-backend",
			"--podman-global-arg=file"});
	std::remove(path.c_str());
	REQUIRE_MESSAGE(a.ok(), a.error().message());
	const auto &r = a->config.runtimes;
	CHECK(r.runcBinary == "/opt/runc");
	CHECK(r.runcRoot == "/run/a");
	CHECK(r.podmanBinary == "/opt/podman");
	CHECK(r.podmanRoot == "/var/a");
	CHECK(r.podmanRunRoot == "/run/pa");
	// Repeated flags replace the file's list, in order.
	CHECK(r.podmanExtraArgs == std::vector<std::string>{"--ulimit", "nofile=1024:1024"});
	CHECK(r.podmanGlobalArgs == std::vector<std::string>{"--events-backend", "file"});

	auto bad = parse({"--runc-root", "relative"});
	REQUIRE_FALSE(bad.ok());
	CHECK(bad.error().what.find("--runc-root: expected an absolute path") == 0);
	CHECK(parse({"--podman-binary", ""}).error().what.find("--podman-binary: must not be empty") == 0);
	CHECK(parse({"--podman-run-arg"}).error().what == "--podman-run-arg needs a value");

	std::string usage = agentUsage("ferryd");
	for (const char *flag : {"--runc-binary", "--runc-root", "--podman-binary", "--podman-root", "--podman-runroot",
				 "--podman-run-arg"})
		CHECK_MESSAGE(usage.find(flag) != std::string::npos, flag);
}

TEST_CASE("the example config carries a runtimes section that parses")
{
	auto c = loadAgentConfig(FERRY_SOURCE_DIR "/configs/ferryd.json");
	REQUIRE_MESSAGE(c.ok(), c.error().message());
	CHECK(c->runtimes.runcBinary == "runc");
	CHECK(c->runtimes.runcRoot == "/run/runc");
	CHECK(c->runtimes.podmanBinary == "podman");
	CHECK(c->runtimes.podmanExtraArgs == std::vector<std::string>{"--ulimit", "nofile=1024:1024"});
}
