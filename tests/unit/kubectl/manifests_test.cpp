// configs/kubernetes and configs/krew: the real kubectl reads them
// (offline: `kubectl annotate --local` decodes every document without an
// API server), and what they say agrees with the plugin and the agent:
// the label, namespace and port name kubectl-ferry looks for, the host
// access ferryd needs, the ferryd.json that ferryd's own parser accepts,
// and a krew manifest for linux amd64 and arm64.
//
// Like plugin_discovery, this needs kubectl and fails without it.
#include <rapidjson/document.h>
#include <rapidjson/stream.h>

#include <map>
#include <sstream>

#include "api/agent_config.h"
#include "kubectl_test_support.h"
#include "pod_resolution.h"

using namespace ferry;
using ferry::test::contains;
using ferry::test::Run;
using rapidjson::Value;

namespace {

std::string findKubectl()
{
	const char *path = std::getenv("PATH");
	std::istringstream dirs(path ? path : "/usr/local/bin:/usr/bin:/bin");
	for (std::string dir; std::getline(dirs, dir, ':');) {
		std::string candidate = dir + "/kubectl";
		if (!dir.empty() && ::access(candidate.c_str(), X_OK) == 0)
			return candidate;
	}
	return {};
}

// Every document of `file` as kubectl decoded it, by "Kind/name".
struct Manifest {
	std::vector<std::unique_ptr<rapidjson::Document>> documents;
	std::map<std::string, const Value *> byName;

	const Value &get(const std::string &kindAndName) const
	{
		auto it = byName.find(kindAndName);
		REQUIRE_MESSAGE(it != byName.end(), "no " << kindAndName << " in the manifest");
		return *it->second;
	}
};

Run kubectlRead(const std::string &file)
{
	std::string kubectl = findKubectl();
	REQUIRE_MESSAGE(!kubectl.empty(), "kubectl is not installed: the manifests cannot be checked. Install Debian's "
					  "kubernetes-client (scripts/install-deps.sh does).");
	test::TempDir home;
	// No kubeconfig, no server: --local never contacts one.
	return test::runProcess({kubectl, "annotate", "--local", "--dry-run=client", "-f", file, "-o", "json",
				 "ferry.test/read=true"},
				{"PATH=/usr/bin:/bin", "HOME=" + home.path.string()});
}

Manifest readManifest(const std::string &file)
{
	Run run = kubectlRead(file);
	REQUIRE_MESSAGE(run.exitCode == 0, file << ": " << run.err);
	Manifest manifest;
	// One JSON document per object, one after the other.
	size_t offset = 0;
	while (run.out.find_first_not_of(" \t\r\n", offset) != std::string::npos) {
		auto doc = std::make_unique<rapidjson::Document>();
		rapidjson::StringStream stream(run.out.c_str() + offset);
		doc->ParseStream<rapidjson::kParseStopWhenDoneFlag>(stream);
		REQUIRE_MESSAGE(!doc->HasParseError(), "kubectl printed something that is not JSON at " << offset);
		offset += stream.Tell();
		REQUIRE((*doc)["kind"].IsString());
		std::string key = std::string((*doc)["kind"].GetString()) + "/" + (*doc)["metadata"]["name"].GetString();
		manifest.byName[key] = doc.get();
		manifest.documents.push_back(std::move(doc));
	}
	return manifest;
}

std::string str(const Value &v, const char *name)
{
	REQUIRE_MESSAGE(v.IsObject(), "not an object where " << name << " should be");
	auto it = v.FindMember(name);
	REQUIRE_MESSAGE(it != v.MemberEnd(), "no " << name);
	REQUIRE_MESSAGE(it->value.IsString(), name << " is not a string");
	return it->value.GetString();
}

bool flag(const Value &v, const char *name)
{
	auto it = v.FindMember(name);
	return it != v.MemberEnd() && it->value.IsBool() && it->value.GetBool();
}

const Value *findByName(const Value &array, const std::string &name)
{
	if (!array.IsArray())
		return nullptr;
	for (const Value &item : array.GetArray()) {
		if (item.IsObject() && item.HasMember("name") && item["name"].IsString() && name == item["name"].GetString())
			return &item;
	}
	return nullptr;
}

const std::string kDaemonSet = std::string(FERRY_CONFIGS_DIR) + "/kubernetes/ferryd-daemonset.yaml";

} // namespace

TEST_CASE("the DaemonSet carries the label, namespace and port name that kubectl-ferry looks for")
{
	Manifest m = readManifest(kDaemonSet);
	CHECK(str(m.get("Namespace/ferry-system")["metadata"], "name") == kubectl::kDefaultAgentNamespace);
	const Value &ds = m.get("DaemonSet/ferryd");
	CHECK(str(ds, "apiVersion") == "apps/v1");
	CHECK(str(ds["metadata"], "namespace") == kubectl::kDefaultAgentNamespace);

	// The plugin's default selector, "key=value", is what the pods carry
	// and what the DaemonSet selects by.
	std::string selector = kubectl::kDefaultAgentSelector;
	std::string key = selector.substr(0, selector.find('='));
	std::string value = selector.substr(selector.find('=') + 1);
	CHECK(str(ds["spec"]["selector"]["matchLabels"], key.c_str()) == value);
	CHECK(str(ds["spec"]["template"]["metadata"]["labels"], key.c_str()) == value);

	const Value &pod = ds["spec"]["template"]["spec"];
	CHECK(flag(pod, "hostNetwork"));
	CHECK(flag(pod, "hostPID"));
	CHECK(str(pod, "dnsPolicy") == "ClusterFirstWithHostNet");
	const Value *ferryd = findByName(pod["containers"], "ferryd");
	REQUIRE(ferryd);
	const Value *api = findByName((*ferryd)["ports"], kubectl::kApiPortName);
	REQUIRE_MESSAGE(api, "no containerPort named " << kubectl::kApiPortName);
	CHECK((*api)["containerPort"].GetInt() == kubectl::kDefaultAgentPort);
	CHECK(flag((*ferryd)["securityContext"], "privileged"));
	CHECK(str((*ferryd)["readinessProbe"]["tcpSocket"], "port") == kubectl::kApiPortName);

	// The agent listens on the port it declares, on the node's address.
	bool listensOnApiPort = false;
	for (const Value &arg : (*ferryd)["args"].GetArray())
		listensOnApiPort |= std::string(arg.GetString()) == "--listen=$(NODE_IP):" + std::to_string(kubectl::kDefaultAgentPort);
	CHECK(listensOnApiPort);
}

TEST_CASE("the DaemonSet mounts the host paths ferryd needs, and the token from a Secret")
{
	Manifest m = readManifest(kDaemonSet);
	const Value &pod = m.get("DaemonSet/ferryd")["spec"]["template"]["spec"];
	const Value &mounts = (*findByName(pod["containers"], "ferryd"))["volumeMounts"];
	auto hostPathAt = [&](const std::string &mountPath) -> std::string {
		for (const Value &mount : mounts.GetArray()) {
			if (str(mount, "mountPath") != mountPath)
				continue;
			const Value *volume = findByName(pod["volumes"], str(mount, "name"));
			REQUIRE(volume);
			return volume->HasMember("hostPath") ? str((*volume)["hostPath"], "path") : std::string("(not hostPath)");
		}
		return "(not mounted)";
	};
	CHECK(hostPathAt("/var/lib/ferry") == "/var/lib/ferry");
	CHECK(hostPathAt("/run/netns") == "/run/netns");
	CHECK(hostPathAt("/run/containerd") == "/run/containerd");
	CHECK(hostPathAt("/run/runc") == "/run/runc");
	CHECK(hostPathAt("/sys/fs/cgroup") == "/sys/fs/cgroup");

	const Value *token = findByName(pod["volumes"], "token");
	REQUIRE(token);
	CHECK(str((*token)["secret"], "secretName") == "ferryd-token");
}

TEST_CASE("the ConfigMap's ferryd.json is accepted by ferryd's own parser and names containerd's runc root")
{
	Manifest m = readManifest(kDaemonSet);
	std::string json = str(m.get("ConfigMap/ferryd-config")["data"], "ferryd.json");
	auto config = api::parseAgentConfig(json);
	REQUIRE_MESSAGE(config.ok(), config.error().message());
	CHECK(config->stateDir == "/var/lib/ferry");
	CHECK(config->tokenFile == "/etc/ferry/token/token");
	CHECK(config->tlsEnabled());
	CHECK(config->runtimes.runcRoot == "/run/containerd/runc/k8s.io");
	CHECK(api::validateAgentConfig(*config).ok());
}

TEST_CASE("the RBAC for users lets them read pods, and nothing else")
{
	Manifest m = readManifest(std::string(FERRY_CONFIGS_DIR) + "/kubernetes/kubectl-ferry-rbac.yaml");
	const Value &rules = m.get("ClusterRole/ferry-operator")["rules"];
	REQUIRE(rules.Size() == 1);
	CHECK(rules[0]["resources"].Size() == 1);
	CHECK(std::string(rules[0]["resources"][0].GetString()) == "pods");
	std::vector<std::string> verbs;
	for (const Value &verb : rules[0]["verbs"].GetArray())
		verbs.push_back(verb.GetString());
	CHECK(verbs == std::vector<std::string>{"get", "list"});
}

TEST_CASE("the krew manifest: plugin ferry, bin kubectl-ferry, linux amd64 and arm64, this version")
{
	Manifest m = readManifest(std::string(FERRY_CONFIGS_DIR) + "/krew/ferry.yaml");
	const Value &plugin = m.get("Plugin/ferry");
	CHECK(str(plugin, "apiVersion") == "krew.googlecontainertools.github.com/v1alpha2");
	const Value &spec = plugin["spec"];
	CHECK(str(spec, "version") == std::string("v") + FERRY_VERSION_FOR_TEST);
	CHECK_FALSE(str(spec, "shortDescription").empty());
	std::vector<std::string> platforms;
	for (const Value &p : spec["platforms"].GetArray()) {
		platforms.push_back(str(p["selector"]["matchLabels"], "os") + "/" + str(p["selector"]["matchLabels"], "arch"));
		CHECK(str(p, "bin") == "kubectl-ferry");
		CHECK(str(p, "uri").rfind("https://", 0) == 0);
		std::string sha = str(p, "sha256");
		CHECK(sha.size() == 64);
		CHECK(sha.find_first_not_of("0123456789abcdef") == std::string::npos);
		bool shipsBinary = false;
		for (const Value &f : p["files"].GetArray())
			shipsBinary |= str(f, "from") == "kubectl-ferry";
		CHECK(shipsBinary);
	}
	CHECK(platforms == std::vector<std::string>{"linux/amd64", "linux/arm64"});
}

TEST_CASE("the check can fail: kubectl refuses a manifest that is not YAML")
{
	test::TempDir dir;
	std::string broken = dir.file("broken.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  labels: [\n");
	Run run = kubectlRead(broken);
	CHECK(run.exitCode != 0);
	CHECK(contains(run.err, "error"));
}
