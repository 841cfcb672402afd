// Pod resolution against recorded `kubectl get -o json` output
// (fixtures/): the happy path for each runtime prefix, -c and the
// default-container annotation, every refusal with the text it must say,
// and the argv that reaches kubectl.
#include "kubectl_test_support.h"
#include "pod_resolution.h"

using namespace ferry;
using namespace ferry::kubectl;
using ferry::test::contains;
using ferry::test::fixture;

namespace {

constexpr const char *kWebAppId = "4da7f68eb9bcbc286e948b16b412fac09bf3ea460a08265ae4eaf8e50d16fba2";
constexpr const char *kWebSidecarId = "e11184348acf2624b1f45385386cc039e0a6f2c84cdb8337d10e5089e6940065";
constexpr const char *kCacheRedisId = "f8b447e29bf8bae220f00e2973bc865c718600b15cedef4c66191cbcdb9871c4";
constexpr const char *kApiApiId = "708704b8536ce3481f5e6fc17893bbab07ace6f15fb58346c1f99dd6a766ed42";

PodInfo podFixture(const std::string &name)
{
	auto pod = parsePod(fixture(name));
	REQUIRE_MESSAGE(pod.ok(), pod.error().message());
	return *pod;
}

std::vector<PodInfo> agentFixture(const std::string &name = "agents.json")
{
	auto agents = parsePodList(fixture(name));
	REQUIRE_MESSAGE(agents.ok(), agents.error().message());
	return *agents;
}

ResolveOptions optionsFor(std::string toNode, std::string container = "")
{
	ResolveOptions options;
	options.toNode = std::move(toNode);
	options.container = std::move(container);
	return options;
}

// The error of a resolution that must fail.
Error failure(const Result<Resolution> &resolved)
{
	REQUIRE_MESSAGE(!resolved.ok(), "resolved, but should have failed: " << resolved->containerName);
	return resolved.error();
}

} // namespace

TEST_CASE("parsePod reads what resolution needs from a recorded pod")
{
	PodInfo pod = podFixture("pod-web-0.json");
	CHECK(pod.name == "web-0");
	CHECK(pod.namespaceName == "shop");
	CHECK(pod.nodeName == "worker-1");
	CHECK(pod.phase == "Running");
	CHECK(pod.ready);
	CHECK_FALSE(pod.deleting);
	CHECK(pod.hostIp == "10.0.0.11");
	CHECK(pod.podIp == "10.244.1.17");
	CHECK(pod.containers == std::vector<std::string>{"app", "sidecar"});
	CHECK(pod.namedPorts.at("http") == 8080);
	CHECK(pod.namedPorts.at("admin") == 9901);
	REQUIRE(pod.containerStatuses.size() == 2);
	CHECK(pod.containerStatuses[1].name == "sidecar");
	CHECK(pod.containerStatuses[1].containerId == std::string("containerd://") + kWebSidecarId);
	CHECK(pod.containerStatuses[1].running);

	PodInfo api = podFixture("pod-api.json");
	CHECK(api.initContainers == std::vector<std::string>{"migrate-db"});
	CHECK(api.annotations.at(kDefaultContainerAnnotation) == "api");

	PodInfo crash = podFixture("pod-crashloop.json");
	REQUIRE(crash.containerStatuses.size() == 1);
	CHECK_FALSE(crash.containerStatuses[0].running);
	CHECK(crash.containerStatuses[0].stateReason == "waiting: CrashLoopBackOff");
	CHECK_FALSE(crash.ready);

	PodInfo pending = podFixture("pod-pending.json");
	CHECK(pending.nodeName.empty());
	CHECK(pending.phase == "Pending");
	CHECK(pending.containerStatuses.empty());
}

TEST_CASE("parsePodList reads the DaemonSet's pods; parse errors name the problem")
{
	std::vector<PodInfo> agents = agentFixture();
	REQUIRE(agents.size() == 6);
	CHECK(agents[0].name == "ferryd-7xk2p");
	CHECK(agents[0].namedPorts.at("api") == 7411);
	CHECK(agents[1].hostIp == "2001:db8:10::13");
	CHECK(agents[3].deleting);
	CHECK(agentFixture("agents-empty.json").empty());

	auto notJson = parsePod("Error from server");
	REQUIRE_FALSE(notJson.ok());
	CHECK(notJson.error().code == EPROTO);
	auto listAsPod = parsePod(fixture("agents.json"));
	REQUIRE_FALSE(listAsPod.ok());
	CHECK(contains(listAsPod.error().what, "expected kind Pod, got List"));
	auto podAsList = parsePodList(fixture("pod-web-0.json"));
	REQUIRE_FALSE(podAsList.ok());
	CHECK(contains(podAsList.error().what, "expected kind List or PodList, got Pod"));
	// Fields of the wrong type read as absent rather than crash the parser.
	auto odd = parsePod(R"({"kind":"Pod","metadata":{"name":"x","annotations":{"a":1}},)"
			    R"("spec":{"containers":"nope","nodeName":7},"status":{"containerStatuses":[1,"x"]}})");
	REQUIRE(odd.ok());
	CHECK(odd->containers.empty());
	CHECK(odd->nodeName.empty());
	CHECK(odd->annotations.empty());
}

TEST_CASE("containerd: -c picks the container; the agents' URLs come from hostIP and the api port")
{
	auto resolved = resolveFrom(podFixture("pod-web-0.json"), agentFixture(), optionsFor("worker-6", "sidecar"));
	REQUIRE_MESSAGE(resolved.ok(), resolved.error().message());
	CHECK(resolved->podName == "web-0");
	CHECK(resolved->podNamespace == "shop");
	CHECK(resolved->podIp == "10.244.1.17");
	CHECK(resolved->node == "worker-1");
	CHECK(resolved->toNode == "worker-6");
	CHECK(resolved->containerName == "sidecar");
	CHECK(resolved->container.criRuntime == "containerd");
	CHECK(std::string(container::toString(resolved->container.runtime)) == "runc");
	CHECK(resolved->container.id == kWebSidecarId);
	CHECK(resolved->source.url == "https://10.0.0.11:7411");
	CHECK(resolved->source.pod == "ferry-system/ferryd-7xk2p");
	CHECK(resolved->source.node == "worker-1");
	CHECK(resolved->destination.url == "https://10.0.0.16:7411");
	CHECK(resolved->destination.pod == "ferry-system/ferryd-h2d7w");

	auto app = resolveFrom(podFixture("pod-web-0.json"), agentFixture(), optionsFor("worker-6", "app"));
	REQUIRE(app.ok());
	CHECK(app->container.id == kWebAppId);
}

TEST_CASE("cri-o: the only container is taken; an IPv6 node address gets brackets, the port its name")
{
	ResolveOptions options = optionsFor("worker-1");
	options.agents.scheme = "http";
	auto resolved = resolveFrom(podFixture("pod-cache.json"), agentFixture(), options);
	REQUIRE_MESSAGE(resolved.ok(), resolved.error().message());
	CHECK(resolved->containerName == "redis");
	CHECK(resolved->container.criRuntime == "cri-o");
	CHECK(std::string(container::toString(resolved->container.runtime)) == "runc");
	CHECK(resolved->container.id == kCacheRedisId);
	// worker-3's agent listens on the port its pod names "api" (7412).
	CHECK(resolved->source.url == "http://[2001:db8:10::13]:7412");
	CHECK(resolved->destination.url == "http://10.0.0.11:7411");
}

TEST_CASE("the default-container annotation chooses when -c is not given; init containers never move")
{
	auto resolved = resolveFrom(podFixture("pod-api.json"), agentFixture(), optionsFor("worker-6"));
	REQUIRE_MESSAGE(resolved.ok(), resolved.error().message());
	CHECK(resolved->containerName == "api");
	CHECK(resolved->container.id == kApiApiId);

	// -c still wins over the annotation.
	auto shipper = resolveFrom(podFixture("pod-api.json"), agentFixture(), optionsFor("worker-6", "log-shipper"));
	REQUIRE(shipper.ok());
	CHECK(shipper->containerName == "log-shipper");

	Error init = failure(resolveFrom(podFixture("pod-api.json"), agentFixture(), optionsFor("worker-6", "migrate-db")));
	CHECK(init.code == EINVAL);
	CHECK(contains(init.what, "container migrate-db of pod api-6f7b9c8d5-qz4mn is an init container"));
	CHECK(contains(init.what, "log-shipper, api"));

	PodInfo broken = podFixture("pod-api.json");
	broken.annotations[kDefaultContainerAnnotation] = "gone";
	Error dangling = failure(resolveFrom(broken, agentFixture(), optionsFor("worker-6")));
	CHECK(dangling.code == EINVAL);
	CHECK(contains(dangling.what, "names gone as its default container"));
}

TEST_CASE("a pod of several containers needs -c; an unknown -c names the pod's containers")
{
	Error many = failure(resolveFrom(podFixture("pod-web-0.json"), agentFixture(), optionsFor("worker-6")));
	CHECK(many.code == EINVAL);
	CHECK(many.what == "pod web-0 has 2 containers; choose one with -c: app, sidecar");
	CHECK(contains(many.context, "pod=web-0"));
	CHECK(contains(many.context, "namespace=shop"));

	Error unknown = failure(resolveFrom(podFixture("pod-web-0.json"), agentFixture(), optionsFor("worker-6", "db")));
	CHECK(unknown.code == ENOENT);
	CHECK(unknown.what == "pod web-0 has no container db; its containers: app, sidecar");
}

TEST_CASE("agents: missing on a node, not running there, or mid-rollout")
{
	Error missing = failure(resolveFrom(podFixture("pod-web-0.json"), agentFixture(), optionsFor("worker-2", "app")));
	CHECK(missing.code == ENOENT);
	CHECK(missing.what == "no ferryd pod on node worker-2 (selector app.kubernetes.io/name=ferryd in ferry-system)");

	// The selector and namespace the user gave are the ones named.
	ResolveOptions custom = optionsFor("worker-6", "app");
	custom.agents.selector = "app=ferry-agent";
	custom.agents.namespaceName = "kube-system";
	Error none = failure(resolveFrom(podFixture("pod-web-0.json"), agentFixture("agents-empty.json"), custom));
	CHECK(none.what == "no ferryd pod on node worker-1 (selector app=ferry-agent in kube-system)");

	Error pending = failure(resolveFrom(podFixture("pod-web-0.json"), agentFixture(), optionsFor("worker-4", "app")));
	CHECK(pending.code == 0);
	CHECK(pending.what == "ferryd pod ferry-system/ferryd-b8v6r on node worker-4 is Pending, not Running");

	// worker-5 has an agent pod being deleted and its replacement: the
	// replacement serves.
	auto rollout = resolveFrom(podFixture("pod-web-0.json"), agentFixture(), optionsFor("worker-5", "app"));
	REQUIRE_MESSAGE(rollout.ok(), rollout.error().message());
	CHECK(rollout->destination.pod == "ferry-system/ferryd-new5t");
	CHECK(rollout->destination.url == "https://10.0.0.15:7411");

	// Only the one being deleted: it is named, with why.
	std::vector<PodInfo> agents = agentFixture();
	agents.erase(agents.begin() + 4);
	Error leaving = failure(resolveFrom(podFixture("pod-web-0.json"), agents, optionsFor("worker-5", "app")));
	CHECK(leaving.what == "ferryd pod ferry-system/ferryd-old5s on node worker-5 is being deleted");

	// The source node's agent is checked as well as the destination's.
	agents = agentFixture();
	agents[0].ready = false;
	Error unready = failure(resolveFrom(podFixture("pod-web-0.json"), agents, optionsFor("worker-6", "app")));
	CHECK(contains(unready.what, "ferryd pod ferry-system/ferryd-7xk2p on node worker-1 is not Ready"));
}

TEST_CASE("a pod that cannot move as it is: not scheduled, not Running, container not running, docker")
{
	Error pending = failure(resolveFrom(podFixture("pod-pending.json"), agentFixture(), optionsFor("worker-6")));
	CHECK(pending.code == 0);
	CHECK(pending.what == "pod batch-worker-0 is not scheduled to a node yet (phase Pending)");

	PodInfo succeeded = podFixture("pod-cache.json");
	succeeded.phase = "Succeeded";
	Error done = failure(resolveFrom(succeeded, agentFixture(), optionsFor("worker-1")));
	CHECK(done.what == "pod cache-5d8f7c9b4-x2k8p is Succeeded, not Running");

	PodInfo deleting = podFixture("pod-cache.json");
	deleting.deleting = true;
	CHECK(failure(resolveFrom(deleting, agentFixture(), optionsFor("worker-1"))).what ==
	      "pod cache-5d8f7c9b4-x2k8p is being deleted");

	Error crash = failure(resolveFrom(podFixture("pod-crashloop.json"), agentFixture(), optionsFor("worker-6")));
	CHECK(crash.what == "container app of pod web-1 is not running (waiting: CrashLoopBackOff)");

	Error docker = failure(resolveFrom(podFixture("pod-docker.json"), agentFixture(), optionsFor("worker-1")));
	CHECK(docker.code == 0);
	CHECK(contains(docker.what, "the container runs under Docker (docker://)"));
	CHECK(contains(docker.context, "container=app"));

	Error same = failure(resolveFrom(podFixture("pod-web-0.json"), agentFixture(), optionsFor("worker-1", "app")));
	CHECK(same.code == EINVAL);
	CHECK(same.what == "pod web-0 already runs on node worker-1; --to-node must name another node");
}

TEST_CASE("parseContainerId maps each runtime prefix and refuses the others by name")
{
	std::string id(64, 'a');
	auto containerd = parseContainerId("containerd://" + id);
	REQUIRE(containerd.ok());
	CHECK(containerd->criRuntime == "containerd");
	CHECK(std::string(container::toString(containerd->runtime)) == "runc");
	CHECK(containerd->id == id);
	auto crio = parseContainerId("cri-o://" + id);
	REQUIRE(crio.ok());
	CHECK(crio->criRuntime == "cri-o");
	CHECK(std::string(container::toString(crio->runtime)) == "runc");

	auto podman = parseContainerId("podman://" + id);
	REQUIRE_FALSE(podman.ok());
	CHECK(contains(podman.error().what, "runs under podman (podman://)"));
	auto docker = parseContainerId("docker://" + id);
	REQUIRE_FALSE(docker.ok());
	CHECK(contains(docker.error().what, "Docker (docker://)"));
	auto kata = parseContainerId("kata://" + id);
	REQUIRE_FALSE(kata.ok());
	CHECK(contains(kata.error().what, "the container runtime 'kata' is not supported"));

	for (std::string bad : {std::string("containerd://") + std::string(63, 'a'), std::string("containerd://") + std::string(64, 'A'),
				std::string("containerd://../../etc"), std::string(64, 'a'), std::string("://") + id}) {
		auto refused = parseContainerId(bad);
		CHECK_MESSAGE(!refused.ok(), bad);
		if (!refused.ok())
			CHECK(refused.error().code == EPROTO);
	}
}

TEST_CASE("resolve runs kubectl twice with the global flags first and the namespace per call")
{
	test::TempDir dir;
	test::FakeKubectl fake(dir, fixture("pod-web-0.json"), fixture("agents.json"));
	KubectlRunner runner(fake.binary, {"/home/ops/.kube/prod", "prod-eu"});
	ResolveOptions options = optionsFor("worker-6", "app");
	options.pod = "web-0";
	options.namespaceName = "shop";
	options.agents.namespaceName = "ferry";
	options.agents.selector = "app.kubernetes.io/name=ferryd,tier=agent";
	auto resolved = resolve(runner, options);
	REQUIRE_MESSAGE(resolved.ok(), resolved.error().message());
	CHECK(resolved->container.id == kWebAppId);

	auto calls = fake.calls();
	REQUIRE(calls.size() == 2);
	CHECK(calls[0] == std::vector<std::string>{"--kubeconfig=/home/ops/.kube/prod", "--context=prod-eu", "get", "pod",
						   "web-0", "--namespace=shop", "--output=json"});
	CHECK(calls[1] == std::vector<std::string>{"--kubeconfig=/home/ops/.kube/prod", "--context=prod-eu", "get", "pods",
						   "--namespace=ferry", "--selector=app.kubernetes.io/name=ferryd,tier=agent",
						   "--output=json"});
}

TEST_CASE("resolve without -n or globals leaves kubectl its defaults")
{
	test::TempDir dir;
	test::FakeKubectl fake(dir, fixture("pod-cache.json"), fixture("agents.json"));
	KubectlRunner runner(fake.binary, {});
	ResolveOptions options = optionsFor("worker-1");
	options.pod = "cache-5d8f7c9b4-x2k8p";
	auto resolved = resolve(runner, options);
	REQUIRE_MESSAGE(resolved.ok(), resolved.error().message());
	auto calls = fake.calls();
	REQUIRE(calls.size() == 2);
	CHECK(calls[0] == std::vector<std::string>{"get", "pod", "cache-5d8f7c9b4-x2k8p", "--output=json"});
	CHECK(calls[1] == std::vector<std::string>{"get", "pods", "--namespace=ferry-system",
						   "--selector=app.kubernetes.io/name=ferryd", "--output=json"});
}

TEST_CASE("resolve: kubectl's NotFound stops it before the agents are asked, and is quoted")
{
	test::TempDir dir;
	test::FakeKubectl fake(dir, "", fixture("agents.json"), "Error from server (NotFound): pods \"web-9\" not found");
	KubectlRunner runner(fake.binary, {});
	ResolveOptions options = optionsFor("worker-6");
	options.pod = "web-9";
	options.namespaceName = "shop";
	auto resolved = resolve(runner, options);
	REQUIRE_FALSE(resolved.ok());
	CHECK(resolved.error().code == ENOENT);
	CHECK(resolved.error().what == "kubectl exited with 1: Error from server (NotFound): pods \"web-9\" not found");
	CHECK(contains(resolved.error().context, "command=kubectl get pod web-9 --namespace=shop --output=json"));
	CHECK(fake.calls().size() == 1);
}
