// The built kubectl-ferry binary: what a user or a script sees. kubectl
// is a stand-in script that prints recorded output ($KUBECTL); the agent,
// where one is needed, is a real ApiServer on 127.0.0.1 (port 0) in front
// of the fake engine.
#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <future>

#include "../api/fake_migration_service.h"
#include "api/api_server.h"
#include "api/schemas.h"
#include "kubectl_test_support.h"
#include "pod_resolution.h"

extern char **environ;

using namespace ferry;
using namespace std::chrono_literals;
using ferry::test::contains;
using ferry::test::fixture;
using ferry::test::Run;

namespace {

constexpr const char *kToken = "kubectl-test-token";
constexpr const char *kWebAppId = "4da7f68eb9bcbc286e948b16b412fac09bf3ea460a08265ae4eaf8e50d16fba2";

// The test's environment with KUBECTL set (or unset when empty), and
// without FERRY_LOG, so that the test decides.
std::vector<std::string> environmentWith(const std::string &kubectl)
{
	std::vector<std::string> env;
	for (char **e = environ; *e; ++e) {
		std::string_view v(*e);
		if (v.rfind("KUBECTL=", 0) != 0 && v.rfind("FERRY_LOG=", 0) != 0)
			env.emplace_back(v);
	}
	if (!kubectl.empty())
		env.push_back("KUBECTL=" + kubectl);
	return env;
}

Run plugin(const test::FakeKubectl &kubectl, std::vector<std::string> args)
{
	args.insert(args.begin(), KUBECTL_FERRY_BINARY);
	return test::runProcess(args, environmentWith(kubectl.binary));
}

rapidjson::Document parseJson(const std::string &text)
{
	rapidjson::Document doc;
	doc.Parse(text.c_str());
	REQUIRE_MESSAGE(!doc.HasParseError(), "not JSON: " << text);
	REQUIRE(doc.IsObject());
	return doc;
}

std::string str(const rapidjson::Value &v, const char *name)
{
	REQUIRE_MESSAGE(v.IsObject(), "not an object at " << name);
	auto it = v.FindMember(name);
	REQUIRE_MESSAGE(it != v.MemberEnd(), "no field " << name);
	REQUIRE_MESSAGE(it->value.IsString(), name << " is not a string");
	return it->value.GetString();
}

// The recorded agents, as if their nodes' addresses were 127.0.0.1 and
// their api port that of the test's agent.
std::string agentsOnLoopback(uint16_t port)
{
	std::string text = fixture("agents.json");
	for (const std::string &from : {std::string("10.0.0.11"), std::string("10.0.0.16")}) {
		for (size_t at = text.find(from); at != std::string::npos; at = text.find(from, at))
			text.replace(at, from.size(), "127.0.0.1");
	}
	const std::string port7411 = "\"containerPort\": 7411";
	const std::string portNew = "\"containerPort\": " + std::to_string(port);
	for (size_t at = text.find(port7411); at != std::string::npos; at = text.find(port7411, at + portNew.size()))
		text.replace(at, port7411.size(), portNew);
	return text;
}

} // namespace

TEST_CASE("--dry-run -o json prints the resolution and the request, one document, exit 0")
{
	test::TempDir dir;
	test::FakeKubectl kubectl(dir, fixture("pod-web-0.json"), fixture("agents.json"));
	Run run = plugin(kubectl, {"migrate", "web-0", "-n", "shop", "-c", "app", "--to-node", "worker-6", "--context",
				   "prod", "--target-netns", "/run/netns/cni-4f1c", "--address", "198.51.100.10/24@eth0",
				   "--dry-run", "-o", "json"});
	CHECK_MESSAGE(run.exitCode == 0, run.err);
	CHECK(run.err.empty());
	CHECK(std::count(run.out.begin(), run.out.end(), '\n') == 1);
	rapidjson::Document doc = parseJson(run.out);
	CHECK(str(doc["pod"], "name") == "web-0");
	CHECK(str(doc["pod"], "namespace") == "shop");
	CHECK(str(doc["pod"], "ip") == "10.244.1.17");
	CHECK(str(doc["pod"], "node") == "worker-1");
	CHECK(str(doc["container"], "name") == "app");
	CHECK(str(doc["container"], "id") == kWebAppId);
	CHECK(str(doc["container"], "criRuntime") == "containerd");
	CHECK(str(doc["container"], "runtime") == "runc");
	CHECK(str(doc, "toNode") == "worker-6");
	CHECK(str(doc["sourceAgent"], "url") == "https://10.0.0.11:7411");
	CHECK(str(doc["sourceAgent"], "pod") == "ferry-system/ferryd-7xk2p");
	CHECK(str(doc["sourceAgent"], "node") == "worker-1");
	CHECK(str(doc["destinationAgent"], "url") == "https://10.0.0.16:7411");
	CHECK(str(doc["destinationAgent"], "node") == "worker-6");

	// The request is the protocol's own encoding, as the agent would get it.
	REQUIRE(doc.HasMember("request"));
	rapidjson::StringBuffer buffer;
	rapidjson::Writer<rapidjson::StringBuffer> writer(buffer);
	doc["request"].Accept(writer);
	auto request = api::fromJson<migration::MigrationRequest>(buffer.GetString());
	REQUIRE_MESSAGE(request.ok(), request.error().message());
	REQUIRE(request->selection.container);
	CHECK(request->selection.container->id == kWebAppId);
	REQUIRE(request->selection.container->runtime);
	CHECK(std::string(container::toString(*request->selection.container->runtime)) == "runc");
	CHECK(request->selection.container->freeze == migration::ContainerSelection::Freeze::Cgroup);
	CHECK(request->targetAgent == "https://10.0.0.16:7411");
	CHECK(request->targetNetns == "/run/netns/cni-4f1c");
	REQUIRE(request->addresses.size() == 1);
	CHECK(request->addresses[0].cidr == "198.51.100.10/24");

	// kubectl got the context and the namespace; nothing else was run.
	auto calls = kubectl.calls();
	REQUIRE(calls.size() == 2);
	CHECK(calls[0] == std::vector<std::string>{"--context=prod", "get", "pod", "web-0", "--namespace=shop", "--output=json"});
	CHECK(calls[1][0] == "--context=prod");
}

TEST_CASE("--dry-run in text names the pod, the container, the nodes and both agents")
{
	test::TempDir dir;
	test::FakeKubectl kubectl(dir, fixture("pod-cache.json"), fixture("agents.json"));
	Run run = plugin(kubectl, {"migrate", "cache-5d8f7c9b4-x2k8p", "--to-node", "worker-1", "--dry-run"});
	CHECK_MESSAGE(run.exitCode == 0, run.err);
	CHECK(contains(run.out, "pod                shop/cache-5d8f7c9b4-x2k8p (fd00:10:244:3::2a)\n"));
	CHECK(contains(run.out, "container          redis\n"));
	CHECK(contains(run.out, "container id       cri-o://f8b447e29bf8bae220f00e2973bc865c718600b15cedef4c66191cbcdb9871c4\n"));
	CHECK(contains(run.out, "runtime            runc (via cri-o)\n"));
	CHECK(contains(run.out, "node               worker-3 -> worker-1\n"));
	CHECK(contains(run.out, "source agent       https://[2001:db8:10::13]:7412 (ferry-system/ferryd-m4q9z on worker-3)\n"));
	CHECK(contains(run.out, "destination agent  https://10.0.0.11:7411 (ferry-system/ferryd-7xk2p on worker-1)\n"));
	CHECK(contains(run.out, "target netns       (not given)\n"));
	CHECK(contains(run.out, "dry run: no agent was contacted\n"));
}

TEST_CASE("resolution failures: the message on stderr, the exit code, and with -o json the error body")
{
	test::TempDir dir;
	test::FakeKubectl web(dir, fixture("pod-web-0.json"), fixture("agents.json"));

	Run choose = plugin(web, {"migrate", "web-0", "-n", "shop", "--to-node", "worker-6", "--dry-run"});
	CHECK(choose.exitCode == 2);
	CHECK(contains(choose.err, "kubectl ferry migrate: cannot resolve pod shop/web-0: pod web-0 has 2 containers; "
				   "choose one with -c: app, sidecar"));
	CHECK(choose.out.empty());

	Run noAgent = plugin(web, {"migrate", "web-0", "-c", "app", "--to-node", "worker-2", "--dry-run", "-o", "json"});
	CHECK(noAgent.exitCode == 5);
	CHECK(contains(noAgent.err, "no ferryd pod on node worker-2 (selector app.kubernetes.io/name=ferryd in ferry-system)"));
	CHECK(contains(noAgent.err, "is the ferryd DaemonSet deployed?"));
	auto body = api::fromJson<api::ErrorReply>(noAgent.out);
	REQUIRE_MESSAGE(body.ok(), noAgent.out);
	CHECK(contains(body->error.what, "no ferryd pod on node worker-2"));

	test::TempDir dockerDir;
	test::FakeKubectl docker(dockerDir, fixture("pod-docker.json"), fixture("agents.json"));
	Run refused = plugin(docker, {"migrate", "legacy-0", "--to-node", "worker-1", "--dry-run"});
	CHECK(refused.exitCode == 1);
	CHECK(contains(refused.err, "the container runs under Docker (docker://)"));

	test::TempDir missingDir;
	test::FakeKubectl missing(missingDir, "", fixture("agents.json"),
				  "Error from server (NotFound): pods \"web-9\" not found");
	Run notFound = plugin(missing, {"migrate", "web-9", "--to-node", "worker-1", "--dry-run"});
	CHECK(notFound.exitCode == 5);
	CHECK(contains(notFound.err, "Error from server (NotFound): pods \"web-9\" not found"));
	// A pod that does not exist is not a DaemonSet problem.
	CHECK_FALSE(contains(notFound.err, "DaemonSet"));

	test::TempDir forbiddenDir;
	test::FakeKubectl forbidden(forbiddenDir, "", fixture("agents.json"),
				    "Error from server (Forbidden): pods \"web-0\" is forbidden: User \"dev\" cannot get "
				    "resource \"pods\" in API group \"\" in the namespace \"shop\"");
	Run denied = plugin(forbidden, {"migrate", "web-0", "-n", "shop", "--to-node", "worker-1", "--dry-run"});
	CHECK(denied.exitCode == 4);
	CHECK(contains(denied.err, "needs 'get' on pods"));
}

TEST_CASE("no kubectl: a clear message, exit 1")
{
	test::TempDir dir;
	std::vector<std::string> args = {KUBECTL_FERRY_BINARY, "migrate", "web-0", "--to-node", "w", "--dry-run"};
	Run run = test::runProcess(args, environmentWith((dir.path / "kubectl").string()));
	CHECK(run.exitCode == 1);
	CHECK(contains(run.err, "cannot run '" + (dir.path / "kubectl").string() + "'"));
}

TEST_CASE("usage and version; a usage error prints nothing on stdout")
{
	auto env = environmentWith("");
	Run help = test::runProcess({KUBECTL_FERRY_BINARY, "--help"}, env);
	CHECK(help.exitCode == 0);
	CHECK(help.out.rfind("Usage: kubectl ferry [flags] <command>", 0) == 0);
	Run migrateHelp = test::runProcess({KUBECTL_FERRY_BINARY, "migrate", "-h"}, env);
	CHECK(migrateHelp.exitCode == 0);
	CHECK(migrateHelp.out.rfind("Usage: kubectl ferry migrate POD", 0) == 0);
	Run version = test::runProcess({KUBECTL_FERRY_BINARY, "version"}, env);
	CHECK(version.exitCode == 0);
	CHECK(version.out == std::string("kubectl-ferry ") + FERRY_VERSION_FOR_TEST + "\n");
	Run versionJson = test::runProcess({KUBECTL_FERRY_BINARY, "version", "-o", "json"}, env);
	CHECK(str(parseJson(versionJson.out), "version") == FERRY_VERSION_FOR_TEST);

	Run bad = test::runProcess({KUBECTL_FERRY_BINARY, "migrate", "web-0", "--to-node", "w", "-o", "json"}, env);
	CHECK(bad.exitCode == 2);
	CHECK(bad.out.empty());
	CHECK(contains(bad.err, "kubectl ferry: --target-netns is required"));
	CHECK(contains(bad.err, "Run 'kubectl ferry migrate --help' for usage."));
}

// An agent on 127.0.0.1 with a token, in front of the fake engine.
struct Agent {
	test::TempDir dir;
	test::FakeMigrationService fake;
	std::unique_ptr<api::ApiServer> server;
	std::string tokenFile;

	Agent()
	{
		tokenFile = dir.file("token", std::string(kToken) + "\n");
		api::AgentConfig config;
		config.listen = *Endpoint::parse("127.0.0.1:0");
		config.stateDir = (dir.path / "state").string();
		config.tokenFile = tokenFile;
		auto created = api::ApiServer::create(fake, config);
		REQUIRE_MESSAGE(created.ok(), created.error().message());
		server = std::move(*created);
		Status started = server->start();
		REQUIRE_MESSAGE(started.ok(), started.error().message());
	}
	~Agent() { server->stop(); }
};

migration::MigrationEvent eventOf(const std::string &id, migration::Phase phase, uint32_t done)
{
	migration::MigrationEvent e;
	e.id = id;
	e.phase = phase;
	e.connectionsDone = done;
	e.connectionsTotal = 3;
	e.bytesDone = done * 4096;
	e.elapsed = std::chrono::microseconds(1000 * (done + 1));
	return e;
}

void finish(test::FakeMigrationService &fake, const std::string &id, migration::Phase end)
{
	REQUIRE(fake.waitForSubscribers(1, 10s));
	fake.emit(eventOf(id, migration::Phase::Streaming, 1));
	migration::MigrationStatus st;
	st.id = id;
	st.phase = end;
	st.connections = 3;
	st.bytesMoved = 12288;
	st.blackout = 4200us;
	st.total = 51000us;
	if (end == migration::Phase::Aborted)
		st.error = "destination refused: netns /run/netns/cni-4f1c is not allowed";
	fake.addMigration(st);
	fake.emit(eventOf(id, end, 3));
}

TEST_CASE("migrate drives the source agent: the resolved container and destination, progress, exit 0")
{
	Agent agent;
	test::TempDir dir;
	test::FakeKubectl kubectl(dir, fixture("pod-web-0.json"), agentsOnLoopback(agent.server->port()));
	const std::string url = "http://127.0.0.1:" + std::to_string(agent.server->port());
	auto run = std::async(std::launch::async, [&] {
		return plugin(kubectl, {"migrate", "web-0", "-c", "app", "--to-node", "worker-6", "--target-netns",
					"/run/netns/cni-4f1c", "--agent-scheme", "http", "--token-file", agent.tokenFile, "--port",
					"8080"});
	});
	finish(agent.fake, "m-1", migration::Phase::Committed);
	Run result = run.get();
	CHECK_MESSAGE(result.exitCode == 0, result.err);
	CHECK(result.out.rfind("migration m-1 started: pod shop/web-0 container app, worker-1 (" + url + ") -> worker-6 (" +
				       url + ")\n",
			       0) == 0);
	CHECK(contains(result.out, "\nstreaming    1/3 connections"));
	CHECK(contains(result.out, "\nmigration m-1 committed\n"));
	CHECK_FALSE(contains(result.out, "\r"));

	auto calls = agent.fake.calls();
	REQUIRE(calls.starts.size() == 1);
	const migration::MigrationRequest &r = calls.starts[0];
	REQUIRE(r.selection.container);
	CHECK(r.selection.container->id == kWebAppId);
	REQUIRE(r.selection.container->runtime);
	CHECK(std::string(container::toString(*r.selection.container->runtime)) == "runc");
	CHECK(r.selection.localPorts == std::vector<uint16_t>{8080});
	CHECK(r.targetAgent == url);
	CHECK(r.targetNetns == "/run/netns/cni-4f1c");
}

TEST_CASE("migrate -o json: the final status as the one document; an abort exits 1")
{
	Agent agent;
	test::TempDir dir;
	test::FakeKubectl kubectl(dir, fixture("pod-web-0.json"), agentsOnLoopback(agent.server->port()));
	auto run = std::async(std::launch::async, [&] {
		return plugin(kubectl, {"migrate", "web-0", "-c", "app", "--to-node", "worker-6", "--target-netns", "cni-4f1c",
					"--agent-scheme=http", "--token-file", agent.tokenFile, "-o", "json"});
	});
	finish(agent.fake, "m-1", migration::Phase::Aborted);
	Run result = run.get();
	CHECK(result.exitCode == 1);
	auto status = api::fromJson<migration::MigrationStatus>(result.out);
	REQUIRE_MESSAGE(status.ok(), result.out);
	CHECK(std::string(api::phaseName(status->phase)) == "aborted");
	CHECK(contains(result.err, "migration m-1 aborted: destination refused"));
}

TEST_CASE("migrate: a wrong token is refused by the agent (exit 4); no agent listening is exit 3")
{
	Agent agent;
	test::TempDir dir;
	test::FakeKubectl kubectl(dir, fixture("pod-web-0.json"), agentsOnLoopback(agent.server->port()));
	std::string wrong = dir.file("wrong-token", "not-the-token\n");
	Run refused = plugin(kubectl, {"migrate", "web-0", "-c", "app", "--to-node", "worker-6", "--target-netns", "x",
				       "--agent-scheme", "http", "--token-file", wrong});
	CHECK(refused.exitCode == 4);
	CHECK(contains(refused.err, "cannot start the migration on http://127.0.0.1:"));
	CHECK(agent.fake.calls().starts.empty());

	// Port 1 on loopback: nothing listens there.
	test::TempDir closedDir;
	test::FakeKubectl closed(closedDir, fixture("pod-web-0.json"), agentsOnLoopback(1));
	Run unreachable = plugin(closed, {"migrate", "web-0", "-c", "app", "--to-node", "worker-6", "--target-netns", "x",
					  "--agent-scheme", "http", "--timeout", "2s"});
	CHECK(unreachable.exitCode == 3);
	CHECK(contains(unreachable.err, "is the source agent reachable from here?"));
}

TEST_CASE("migrate: unreadable credentials are a usage error before kubectl is asked anything")
{
	test::TempDir dir;
	test::FakeKubectl kubectl(dir, fixture("pod-web-0.json"), fixture("agents.json"));
	Run token = plugin(kubectl, {"migrate", "web-0", "-c", "app", "--to-node", "worker-6", "--target-netns", "x",
				     "--token-file", (dir.path / "no-token").string(), "-o", "json"});
	CHECK(token.exitCode == 2);
	CHECK(token.out.empty());
	CHECK(contains(token.err, "kubectl ferry: --token-file: "));
	Run ca = plugin(kubectl, {"migrate", "web-0", "-c", "app", "--to-node", "worker-6", "--target-netns", "x",
				  "--cacert", (dir.path / "no-ca.pem").string()});
	CHECK(ca.exitCode == 2);
	CHECK(contains(ca.err, "--cacert: cannot read " + (dir.path / "no-ca.pem").string()));
	CHECK(kubectl.calls().empty());
}

TEST_CASE("a resolution error reads as what is missing, not as an errno")
{
	test::TempDir dir;
	test::FakeKubectl kubectl(dir, fixture("pod-web-0.json"), fixture("agents.json"));
	Run run = plugin(kubectl, {"migrate", "web-0", "-c", "app", "--to-node", "worker-2", "--dry-run"});
	CHECK(run.exitCode == 5);
	CHECK(contains(run.err, "kubectl ferry migrate: cannot resolve pod web-0: no ferryd pod on node worker-2 (selector "
				"app.kubernetes.io/name=ferryd in ferry-system) [pod=web-0 namespace=shop]\n"));
	CHECK_FALSE(contains(run.err, "No such file or directory"));
}
