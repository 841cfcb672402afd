// ferry-oci-hook's parsing: arguments (argv as runtimes pass it), the
// config file and environment, the OCI state on stdin, the stage and the
// registration derived from them.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "hook_invocation.h"

using namespace ferry;
using namespace ferry::ocihook;
using namespace std::chrono_literals;

namespace {

struct TempFile {
	std::string path;
	explicit TempFile(const std::string &content)
	{
		char name[] = "/tmp/ferry-hook-test-XXXXXX";
		int fd = ::mkstemp(name);
		REQUIRE(fd >= 0);
		::close(fd);
		path = name;
		std::ofstream(path, std::ios::binary) << content;
	}
	~TempFile() { std::remove(path.c_str()); }
};

Environment envOf(std::map<std::string, std::string> vars)
{
	return [vars](const char *name) -> std::optional<std::string> {
		auto it = vars.find(name);
		if (it == vars.end())
			return std::nullopt;
		return it->second;
	};
}

Result<HookArguments> parse(std::vector<std::string> argv, std::map<std::string, std::string> env = {})
{
	std::vector<const char *> raw;
	for (const auto &a : argv)
		raw.push_back(a.c_str());
	// No machine-wide /etc/ferry/hook.json may leak into the tests: point
	// FERRY_HOOK_CONFIG at an empty object unless the test sets it.
	static TempFile empty("{}");
	if (!env.count("FERRY_HOOK_CONFIG"))
		env["FERRY_HOOK_CONFIG"] = empty.path;
	return parseHookArguments(static_cast<int>(raw.size()), raw.data(), envOf(env));
}

std::string errorOf(const Result<HookArguments> &r)
{
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == EINVAL);
	return r.error().what;
}

constexpr const char *kRuncState = R"({"ociVersion":"1.0.2","id":"web-1","status":"created","pid":4242,
	"bundle":"/srv/bundles/web-1","annotations":{"io.ferry.migratable":"true","team":"edge"}})";
constexpr const char *kPodmanStop = R"({"ociVersion":"1.0.2-dev","id":"98b823f8a512","status":"stopped",
	"bundle":"/var/lib/containers/storage/overlay-containers/98b823f8a512/userdata",
	"annotations":{"io.container.manager":"libpod","io.ferry.migratable":"true"}})";

} // namespace

TEST_CASE("defaults, then the config file, then the environment, then the flags")
{
	auto defaults = parse({"ferry-oci-hook"});
	REQUIRE(defaults.ok());
	CHECK(defaults->settings.agentUrl == kDefaultAgentUrl);
	CHECK(defaults->settings.tokenFile == kDefaultTokenFile);
	CHECK(defaults->settings.timeout == 1000ms);
	CHECK_FALSE(defaults->settings.runtime.has_value());
	CHECK_FALSE(defaults->stage.has_value());

	TempFile file(R"({"agent_url":"http://198.51.100.1:7411","token_file":"/etc/ferry/hook-token",
		"ca_file":"/etc/ferry/ca.pem","cert_file":"/etc/ferry/hook.crt","key_file":"/etc/ferry/hook.key",
		"runtime":"podman","timeout_ms":250})");
	auto fromFile = parse({"ferry-oci-hook", "--config", file.path});
	REQUIRE_MESSAGE(fromFile.ok(), fromFile.error().message());
	CHECK(fromFile->configFile == file.path);
	CHECK(fromFile->settings.agentUrl == "http://198.51.100.1:7411");
	CHECK(fromFile->settings.tokenFile == "/etc/ferry/hook-token");
	CHECK(fromFile->settings.caFile == "/etc/ferry/ca.pem");
	CHECK(fromFile->settings.certFile == "/etc/ferry/hook.crt");
	CHECK(fromFile->settings.keyFile == "/etc/ferry/hook.key");
	CHECK((fromFile->settings.runtime == container::Runtime::Podman));
	CHECK(fromFile->settings.timeout == 250ms);

	// $FERRY_HOOK_CONFIG names the file when --config does not.
	auto viaEnv = parse({"ferry-oci-hook"}, {{"FERRY_HOOK_CONFIG", file.path},
						{"FERRY_AGENT_URL", "http://[2001:db8::1]:7411"},
						{"FERRY_TOKEN_FILE", "/run/token"}});
	REQUIRE(viaEnv.ok());
	CHECK(viaEnv->settings.agentUrl == "http://[2001:db8::1]:7411"); // env over the file
	CHECK(viaEnv->settings.tokenFile == "/run/token");
	CHECK(viaEnv->settings.timeout == 250ms);

	auto flags = parse({"ferry-oci-hook", "--agent=http://127.0.0.1:9", "--token-file", "", "--runtime", "runc",
			    "--timeout-ms", "5", "--ca-file", "/ca", "--cert-file", "/c", "--key-file=/k"},
			   {{"FERRY_AGENT_URL", "http://198.51.100.9:1"}});
	REQUIRE(flags.ok());
	CHECK(flags->settings.agentUrl == "http://127.0.0.1:9");
	CHECK(flags->settings.tokenFile.empty());
	CHECK((flags->settings.runtime == container::Runtime::Runc));
	CHECK(flags->settings.timeout == 5ms);
	CHECK(flags->settings.caFile == "/ca");
	CHECK(flags->settings.certFile == "/c");
	CHECK(flags->settings.keyFile == "/k");
}

TEST_CASE("the stage: a positional anywhere, argv[0], or none")
{
	CHECK((parse({"ferry-oci-hook", "poststart"})->stage == Stage::Poststart));
	CHECK((parse({"/usr/local/bin/ferry-oci-hook", "--runtime", "runc", "poststop"})->stage == Stage::Poststop));
	CHECK((parse({"ferry-oci-hook", "poststop", "--timeout-ms", "10"})->stage == Stage::Poststop));
	// An args array written without the program name.
	CHECK((parse({"poststart", "--timeout-ms", "10"})->stage == Stage::Poststart));
	CHECK((parse({"poststart", "poststart"})->stage == Stage::Poststart));
	CHECK_FALSE(parse({"ferry-oci-hook"})->stage.has_value());
	CHECK(parse({"ferry-oci-hook", "--help"})->help);
}

TEST_CASE("bad command lines name what is wrong")
{
	CHECK(errorOf(parse({"ferry-oci-hook", "poststart", "poststop"})).find("two stages") != std::string::npos);
	CHECK(errorOf(parse({"ferry-oci-hook", "prestart"})).find("prestart") != std::string::npos);
	CHECK(errorOf(parse({"ferry-oci-hook", "--agent"})).find("--agent needs a value") != std::string::npos);
	CHECK(errorOf(parse({"ferry-oci-hook", "--agent="})).find("--agent") != std::string::npos);
	CHECK(errorOf(parse({"ferry-oci-hook", "--bogus", "1"})).find("--bogus") != std::string::npos);
	CHECK(errorOf(parse({"ferry-oci-hook", "--runtime", "crun"})).find("--runtime") != std::string::npos);
	CHECK(errorOf(parse({"ferry-oci-hook", "--timeout-ms", "0"})).find("--timeout-ms") != std::string::npos);
	CHECK(errorOf(parse({"ferry-oci-hook", "--timeout-ms", "30001"})).find("--timeout-ms") != std::string::npos);
	CHECK(errorOf(parse({"ferry-oci-hook", "--timeout-ms", "1s"})).find("--timeout-ms") != std::string::npos);
	auto missing = parse({"ferry-oci-hook", "--config", "/nonexistent/hook.json"});
	REQUIRE_FALSE(missing.ok());
	CHECK(missing.error().code == ENOENT);
}

TEST_CASE("the config file is strict")
{
	auto error = [](const char *json) {
		auto r = parseHookConfig(json);
		REQUIRE_FALSE(r.ok());
		CHECK(r.error().code == EINVAL);
		return r.error().what;
	};
	CHECK(error(R"({"agent":"x"})").find("agent: unknown field") != std::string::npos);
	CHECK(error(R"({"agent_url":""})").find("agent_url") != std::string::npos);
	CHECK(error(R"({"agent_url":1})").find("agent_url: expected string") != std::string::npos);
	CHECK(error(R"({"timeout_ms":"100"})").find("timeout_ms") != std::string::npos);
	CHECK(error(R"({"timeout_ms":0})").find("timeout_ms") != std::string::npos);
	CHECK(error(R"({"runtime":"docker"})").find("runtime") != std::string::npos);
	CHECK(error(R"({"token_file":"a","token_file":"b"})").find("duplicate") != std::string::npos);
	CHECK(error("[]").find("object") != std::string::npos);
	CHECK(error("{").find("not valid JSON") != std::string::npos);
	CHECK(parseHookConfig("{}").ok());
}

TEST_CASE("the OCI state as runc and podman write it")
{
	auto runc = parseOciState(kRuncState);
	REQUIRE_MESSAGE(runc.ok(), runc.error().message());
	CHECK(runc->ociVersion == "1.0.2");
	CHECK(runc->id == "web-1");
	CHECK(runc->status == "created");
	CHECK(runc->pid == 4242);
	CHECK(runc->bundle == "/srv/bundles/web-1");
	CHECK(runc->annotations.at("team") == "edge");
	CHECK(isMigratable(*runc));
	CHECK((resolveStage(std::nullopt, *runc).value() == Stage::Poststart));
	CHECK((resolveStage(Stage::Poststop, *runc).value() == Stage::Poststop));
	CHECK((resolveRuntime(std::nullopt, *runc) == container::Runtime::Runc));

	// podman's poststop state has no pid; the status gives the stage.
	auto podman = parseOciState(kPodmanStop);
	REQUIRE_MESSAGE(podman.ok(), podman.error().message());
	CHECK(podman->pid == 0);
	CHECK((resolveStage(std::nullopt, *podman).value() == Stage::Poststop));
	CHECK((resolveRuntime(std::nullopt, *podman) == container::Runtime::Podman));
	CHECK((resolveRuntime(container::Runtime::Runc, *podman) == container::Runtime::Runc));

	// Unknown fields are ignored: a newer runtime may add some.
	CHECK(parseOciState(R"({"id":"a","status":"running","pid":1,"future":[1,2]})").ok());
	CHECK((resolveStage(std::nullopt, *parseOciState(R"({"id":"a","status":"running","pid":1})")).value() ==
	      Stage::Poststart));
	CHECK(resolveStage(std::nullopt, *parseOciState(R"({"id":"a","status":"creating","pid":1})")).error().code ==
	      EINVAL);
}

TEST_CASE("migratable only with io.ferry.migratable exactly \"true\"")
{
	CHECK_FALSE(isMigratable(*parseOciState(R"({"id":"a","status":"running","pid":1})")));
	CHECK_FALSE(isMigratable(
		*parseOciState(R"({"id":"a","status":"running","pid":1,"annotations":{"io.ferry.migratable":"yes"}})")));
	CHECK_FALSE(isMigratable(
		*parseOciState(R"({"id":"a","status":"running","pid":1,"annotations":{"io.ferry.migratable":"TRUE"}})")));
	CHECK(isMigratable(
		*parseOciState(R"({"id":"a","status":"running","pid":1,"annotations":{"io.ferry.migratable":"true"}})")));
}

TEST_CASE("bad states are refused with the reason")
{
	auto error = [](std::string_view json) {
		auto r = parseOciState(json);
		REQUIRE_FALSE(r.ok());
		return r.error();
	};
	CHECK(error("").what.find("not valid JSON") != std::string::npos);
	CHECK(error("garbage").what.find("not valid JSON") != std::string::npos);
	CHECK(error("[1]").what.find("object") != std::string::npos);
	CHECK(error(R"({"status":"running","pid":1})").what == "state.id: missing");
	CHECK(error(R"({"id":"","status":"running","pid":1})").what.find("state.id") != std::string::npos);
	CHECK(error(R"({"id":"a","pid":1})").what == "state.status: missing");
	CHECK(error(R"({"id":"a","status":"running"})").what.find("state.pid") != std::string::npos);
	CHECK(error(R"({"id":"a","status":"running","pid":"12"})").what.find("state.pid") != std::string::npos);
	CHECK(error(R"({"id":"a","status":"running","pid":-3})").what.find("state.pid") != std::string::npos);
	CHECK(error(R"({"id":7,"status":"running","pid":1})").what.find("state.id: expected string") !=
	      std::string::npos);
	CHECK(error(R"({"id":"a","status":"running","pid":1,"annotations":[]})").what.find("annotations") !=
	      std::string::npos);
	CHECK(error(R"({"id":"a","status":"running","pid":1,"annotations":{"k":1}})").what.find("state.annotations.k") !=
	      std::string::npos);
	CHECK(error(std::string(kMaxStateBytes + 1, ' ')).code == E2BIG);
}

TEST_CASE("the registration: netns from the pid, name is the id, no cgroup")
{
	auto state = parseOciState(kRuncState);
	REQUIRE(state.ok());
	container::ContainerInfo info = registrationFor(*state, container::Runtime::Runc);
	CHECK(info.id == "web-1");
	CHECK(info.name == "web-1");
	CHECK((info.runtime == container::Runtime::Runc));
	CHECK(info.pid == 4242);
	CHECK(info.netns == "pid:4242");
	CHECK(info.bundle == "/srv/bundles/web-1");
	CHECK(info.cgroup.empty());
	CHECK(info.annotations == state->annotations);
}
