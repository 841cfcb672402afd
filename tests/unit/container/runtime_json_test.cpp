// runc state, podman inspect and the config.json rewrite, on outputs
// recorded from runc 1.1.5 and podman 4.3.1 (fixtures/).
#include <doctest/doctest.h>

#include <algorithm>
#include <fstream>
#include <sstream>

#include <rapidjson/document.h>

#include "container/container_runtime.h"
#include "container/runtime_json.h"

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

rapidjson::Document parseJson(const std::string &text)
{
	rapidjson::Document doc;
	doc.Parse(text.c_str());
	REQUIRE_FALSE(doc.HasParseError());
	return doc;
}

std::vector<std::string> strings(const rapidjson::Value &array)
{
	std::vector<std::string> out;
	for (const auto &v : array.GetArray())
		out.emplace_back(v.GetString());
	return out;
}

bool contains(const std::vector<std::string> &items, const std::string &item)
{
	return std::find(items.begin(), items.end(), item) != items.end();
}

} // namespace

TEST_CASE("runc state of a paused container")
{
	auto info = parseRuncState(fixture("runc_state_paused.json"));
	REQUIRE(info.ok());
	CHECK(std::string(toString(info->runtime)) == toString(Runtime::Runc));
	CHECK(info->id == "t2");
	CHECK(info->name == "t2");
	CHECK(info->pid == 16875);
	CHECK(info->status == "paused");
	CHECK(info->bundle == "/tmp/rtx/b2");
	CHECK(info->annotations.at("io.ferry.migratable") == "true");
	CHECK(std::string(toString(info->spec.runtime)) == toString(Runtime::Runc));
	CHECK(info->spec.bundle == "/tmp/rtx/b2");
	CHECK(info->spec.name == "t2");
	CHECK(info->netns.empty()); // filled by inspectContainer from the live process
}

TEST_CASE("runc state that is not one")
{
	CHECK(parseRuncState("").error().code == EINVAL);
	CHECK(parseRuncState("[]").error().code == EINVAL);
	CHECK(parseRuncState(R"({"id":"x","status":"running"})").error().code == EINVAL);
	CHECK(parseRuncState(R"({"id":"x","pid":"12","status":"running"})").error().code == EINVAL);
	auto ok = parseRuncState(R"({"id":"x","pid":0,"status":"stopped","bundle":"/b"})");
	REQUIRE(ok.ok());
	CHECK(ok->annotations.empty());
}

TEST_CASE("podman inspect of a running container: identity and what a destination runs")
{
	auto info = parsePodmanInspect(fixture("podman_inspect_running.json"));
	REQUIRE(info.ok());
	CHECK(std::string(toString(info->runtime)) == toString(Runtime::Podman));
	CHECK(info->id == "87d0229ffa02ca117e1a220f2f7c624702b42b5d940906908d15f91918b8170a");
	CHECK(info->name == "p1");
	CHECK(info->pid == 12557);
	CHECK(info->status == "running");
	CHECK(info->annotations.at("io.ferry.migratable") == "true");
	CHECK(info->annotations.count("io.container.manager") == 1);

	const ContainerSpec &spec = info->spec;
	CHECK(std::string(toString(spec.runtime)) == toString(Runtime::Podman));
	CHECK(spec.name == "p1");
	CHECK(spec.image == "localhost/ferry-test:1");
	CHECK(spec.command == std::vector<std::string>{"/work/main/build/containers/demo/ferry-demo-server", "--listen",
						       "127.0.0.1:7001"});
	CHECK(contains(spec.environment, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
	CHECK(contains(spec.environment, "HOME=/root"));
	for (const std::string &e : spec.environment) {
		CHECK(e.rfind("HOSTNAME=", 0) != 0);
		CHECK(e.rfind("container=", 0) != 0);
	}
	REQUIRE(spec.mounts.size() == 5);
	bool sawDemo = false;
	for (const BindMount &m : spec.mounts) {
		CHECK(m.readOnly);
		if (m.destination == "/work/main/build/containers/demo") {
			sawDemo = true;
			CHECK(m.source == "/work/main/build/containers/demo");
		}
	}
	CHECK(sawDemo);
	CHECK(spec.workingDirectory == "/");
	CHECK(spec.user.empty());
	CHECK(spec.annotations.at("io.ferry.migratable") == "true");
	CHECK(spec.annotations.count("io.container.manager") == 0);
	CHECK(spec.annotations.count("io.podman.annotations.init") == 0);
	CHECK(spec.annotations.count("io.kubernetes.cri-o.TTY") == 0);
}

TEST_CASE("podman inspect: a migrated container's handoff leftovers are not carried on")
{
	std::string text = R"([{"Id":"abc","Name":"web","Path":"/srv","Args":[],"ImageName":"",
		"Image":"deadbeef","State":{"Status":"running","Pid":42},
		"Config":{"Env":["LISTEN_FDS=2","A=1","FERRY_MANIFEST=/run/ferry/manifest.json","LISTEN_PID=1"],
		          "WorkingDir":"/w","User":"1000:1000"},
		"Mounts":[{"Type":"bind","Source":"/var/m.json","Destination":"/run/ferry/manifest.json","RW":false},
		          {"Type":"volume","Source":"/v","Destination":"/data","RW":true},
		          {"Type":"bind","Source":"/srv/data","Destination":"/data2","RW":true}]}])";
	auto info = parsePodmanInspect(text);
	REQUIRE(info.ok());
	CHECK(info->spec.image == "deadbeef");
	CHECK(info->spec.command == std::vector<std::string>{"/srv"});
	CHECK(info->spec.environment == std::vector<std::string>{"A=1"});
	REQUIRE(info->spec.mounts.size() == 1);
	CHECK(info->spec.mounts[0].destination == "/data2");
	CHECK_FALSE(info->spec.mounts[0].readOnly);
	CHECK(info->spec.user == "1000:1000");
	CHECK(info->spec.workingDirectory == "/w");
}

TEST_CASE("podman inspect that is not one")
{
	CHECK(parsePodmanInspect("[]").error().code == EINVAL);
	CHECK(parsePodmanInspect("[{},{}]").error().code == EINVAL);
	CHECK(parsePodmanInspect(R"([{"Id":"a","State":{"Status":"running"},"Config":{}}])").error().code == EINVAL);
	CHECK(parsePodmanInspect("not json").error().code == EINVAL);
}

TEST_CASE("the runtimes' answers for an unknown container")
{
	CHECK(saysNoSuchContainer("time=\"2026-11-22T05:14:50Z\" level=error msg=\"container does not exist\"\n"));
	CHECK(saysNoSuchContainer("Error: no container with name or ID \"nope\" found: no such container\n"));
	CHECK(saysNoSuchContainer("Error: inspecting object: no such container nope\n"));
	CHECK_FALSE(saysNoSuchContainer("Error: OCI runtime error: permission denied\n"));
	CHECK_FALSE(saysNoSuchContainer(""));
}

TEST_CASE("config.json rewrite for a destination container")
{
	RuncConfigRewrite rewrite;
	rewrite.sourceBundle = "/srv/bundles/web";
	rewrite.netnsPath = "/run/netns/hostB";
	rewrite.environment = {{"LISTEN_FDS", "2"}, {"LISTEN_PID", "1"}, {"PATH", "/bin"}};
	rewrite.manifestPath = "/var/lib/ferry/m1.json";
	std::string source = fixture("runc_config.json");
	auto text = rewriteRuncConfig(source, rewrite);
	REQUIRE(text.ok());
	auto before = parseJson(source);
	auto after = parseJson(*text);

	CHECK(std::string(after["root"]["path"].GetString()) == "/srv/bundles/web/rootfs");
	CHECK(after["root"]["readonly"].GetBool() == before["root"]["readonly"].GetBool());
	CHECK_FALSE(after["process"]["terminal"].GetBool());
	auto env = strings(after["process"]["env"]);
	CHECK(contains(env, "LISTEN_FDS=2"));
	CHECK(contains(env, "LISTEN_PID=1"));
	CHECK(contains(env, "PATH=/bin"));
	CHECK(std::count_if(env.begin(), env.end(), [](const std::string &e) { return e.rfind("PATH=", 0) == 0; }) == 1);
	CHECK(strings(after["process"]["args"]) == strings(before["process"]["args"]));

	bool network = false;
	for (const auto &ns : after["linux"]["namespaces"].GetArray())
		if (std::string(ns["type"].GetString()) == "network") {
			network = true;
			CHECK(std::string(ns["path"].GetString()) == "/run/netns/hostB");
		}
	CHECK(network);
	CHECK_FALSE(after["linux"].HasMember("cgroupsPath"));

	const auto &mounts = after["mounts"];
	REQUIRE(mounts.Size() == before["mounts"].Size() + 1);
	const auto &manifest = mounts[mounts.Size() - 1];
	CHECK(std::string(manifest["destination"].GetString()) == kContainerManifestPath);
	CHECK(std::string(manifest["source"].GetString()) == "/var/lib/ferry/m1.json");
	CHECK(contains(strings(manifest["options"]), "ro"));
	CHECK(std::string(after["annotations"]["io.ferry.migratable"].GetString()) == "true");

	SUBCASE("rewriting a rewritten config replaces the manifest and the handoff variables")
	{
		RuncConfigRewrite again = rewrite;
		again.environment = {{"LISTEN_FDS", "1"}};
		again.manifestPath = "/var/lib/ferry/m2.json";
		again.sourceBundle = "/elsewhere";
		auto twice = rewriteRuncConfig(*text, again);
		REQUIRE(twice.ok());
		auto doc = parseJson(*twice);
		auto env2 = strings(doc["process"]["env"]);
		CHECK(contains(env2, "LISTEN_FDS=1"));
		CHECK_FALSE(contains(env2, "LISTEN_FDS=2"));
		CHECK_FALSE(contains(env2, "LISTEN_PID=1"));
		CHECK(doc["mounts"].Size() == mounts.Size());
		CHECK(std::string(doc["mounts"][doc["mounts"].Size() - 1]["source"].GetString()) == "/var/lib/ferry/m2.json");
		// Already absolute: kept.
		CHECK(std::string(doc["root"]["path"].GetString()) == "/srv/bundles/web/rootfs");
	}
}

TEST_CASE("config.json rewrite: a relative bind source, a missing network entry, a terminal and a cgroupsPath")
{
	std::string source = R"({"ociVersion":"1.0.2","root":{"path":"./rootfs"},
		"process":{"terminal":true,"args":["sh"],"cwd":"/"},
		"mounts":[{"destination":"/data","type":"bind","source":"data","options":["rbind"]}],
		"linux":{"cgroupsPath":"/web","namespaces":[{"type":"pid"},{"type":"mount"}]}})";
	RuncConfigRewrite rewrite;
	rewrite.sourceBundle = "/b";
	rewrite.netnsPath = "/proc/77/ns/net";
	auto text = rewriteRuncConfig(source, rewrite);
	REQUIRE(text.ok());
	auto doc = parseJson(*text);
	CHECK(std::string(doc["root"]["path"].GetString()) == "/b/rootfs");
	CHECK(std::string(doc["mounts"][0]["source"].GetString()) == "/b/data");
	CHECK(doc["mounts"].Size() == 1); // no manifest asked for
	CHECK_FALSE(doc["process"]["terminal"].GetBool());
	CHECK(doc["process"]["env"].Size() == 0);
	CHECK_FALSE(doc["linux"].HasMember("cgroupsPath"));
	REQUIRE(doc["linux"]["namespaces"].Size() == 3);
	CHECK(std::string(doc["linux"]["namespaces"][2]["path"].GetString()) == "/proc/77/ns/net");
}

TEST_CASE("config.json that runc could not run is refused")
{
	RuncConfigRewrite rewrite;
	rewrite.sourceBundle = "/b";
	rewrite.netnsPath = "/run/netns/x";
	CHECK(rewriteRuncConfig("{", rewrite).error().code == EINVAL);
	CHECK(rewriteRuncConfig("[]", rewrite).error().code == EINVAL);
	CHECK(rewriteRuncConfig(R"({"process":{}})", rewrite).error().code == EINVAL);
	CHECK(rewriteRuncConfig(R"({"root":{"path":"r"},"process":{}})", rewrite).error().code == EINVAL);
}

TEST_CASE("config.json rewrite: the destination's cgroup sits next to the source's, never on it")
{
	auto cgroupAfter = [](const std::string &linux) {
		std::string source = R"({"root":{"path":"/r"},"process":{"args":["sh"]},"linux":)" + linux + "}";
		RuncConfigRewrite rewrite;
		rewrite.sourceBundle = "/b";
		rewrite.netnsPath = "/run/netns/x";
		rewrite.cgroupLeaf = "web-ferry-0a1b2c3d";
		auto text = rewriteRuncConfig(source, rewrite);
		REQUIRE(text.ok());
		auto doc = parseJson(*text);
		return std::string(doc["linux"]["cgroupsPath"].GetString());
	};
	CHECK(cgroupAfter(R"({})") == "/web-ferry-0a1b2c3d");
	CHECK(cgroupAfter(R"({"cgroupsPath":"/web"})") == "/web-ferry-0a1b2c3d");
	CHECK(cgroupAfter(R"({"cgroupsPath":"/pods/p1/web"})") == "/pods/p1/web-ferry-0a1b2c3d");
	CHECK(cgroupAfter(R"({"cgroupsPath":"system.slice:runc:web"})") == "system.slice:runc:web-ferry-0a1b2c3d");
}

TEST_CASE("config.json rewrite records the source bundle, and runc state sends it on")
{
	std::string source = fixture("runc_config.json");
	RuncConfigRewrite rewrite;
	rewrite.sourceBundle = "/srv/bundles/web";
	rewrite.netnsPath = "/run/netns/x";
	auto first = rewriteRuncConfig(source, rewrite);
	REQUIRE(first.ok());
	CHECK(std::string(parseJson(*first)["annotations"][std::string(kBundleAnnotation).c_str()].GetString()) ==
	      "/srv/bundles/web");
	// The second move reads the config from the first destination's work
	// directory: the original bundle stays.
	rewrite.sourceBundle = "/var/lib/ferry/containers/m1/runtime";
	auto second = rewriteRuncConfig(*first, rewrite);
	REQUIRE(second.ok());
	CHECK(std::string(parseJson(*second)["annotations"][std::string(kBundleAnnotation).c_str()].GetString()) ==
	      "/srv/bundles/web");

	auto state = parseRuncState(R"({"id":"web","pid":5,"status":"running",)"
				    R"("bundle":"/var/lib/ferry/containers/m1/runtime",)"
				    R"("annotations":{"io.ferry.bundle":"/srv/bundles/web"}})");
	REQUIRE(state.ok());
	CHECK(state->bundle == "/var/lib/ferry/containers/m1/runtime");
	CHECK(state->spec.bundle == "/srv/bundles/web");
	auto plain = parseRuncState(R"({"id":"web","pid":5,"status":"running","bundle":"/b","annotations":{}})");
	REQUIRE(plain.ok());
	CHECK(plain->spec.bundle == "/b");
}

TEST_CASE("config.json rewrite refuses other namespaces joined by path, naming the type")
{
	RuncConfigRewrite rewrite;
	rewrite.sourceBundle = "/b";
	rewrite.netnsPath = "/run/netns/x";
	std::string config = R"({"root":{"path":"rootfs"},"process":{},"linux":{"namespaces":[)"
			     R"({"type":"pid"},{"type":"network","path":"/proc/9/ns/net"},)"
			     R"({"type":"ipc","path":"/proc/42/ns/ipc"}]}})";
	auto refused = rewriteRuncConfig(config, rewrite);
	REQUIRE_FALSE(refused.ok());
	CHECK(refused.error().code == EINVAL);
	CHECK(refused.error().what.find("ipc namespace") != std::string::npos);
	// Without the path it is a fresh namespace of the new container: fine.
	std::string fresh = R"({"root":{"path":"rootfs"},"process":{},"linux":{"namespaces":[{"type":"ipc"}]}})";
	CHECK(rewriteRuncConfig(fresh, rewrite).ok());
}
