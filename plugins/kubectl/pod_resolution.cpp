#include "pod_resolution.h"

#include <rapidjson/document.h>

#include <algorithm>

namespace ferry::kubectl {

namespace {

using rapidjson::Value;

// --- reading kubectl's JSON ------------------------------------------------
//
// kubectl prints the API's objects; fields that the API omits when empty
// (no annotations, no ports, no containerStatuses before the kubelet
// reported) are simply absent, so a missing field reads as empty here. Only
// the shape that makes the document unusable (not an object, no items) is
// an error.

const Value *member(const Value &object, const char *name)
{
	if (!object.IsObject())
		return nullptr;
	auto it = object.FindMember(name);
	return it == object.MemberEnd() ? nullptr : &it->value;
}

std::string stringAt(const Value &object, const char *name)
{
	const Value *v = member(object, name);
	return v && v->IsString() ? std::string(v->GetString(), v->GetStringLength()) : std::string();
}

const Value &objectAt(const Value &object, const char *name)
{
	static const Value kEmpty(rapidjson::kObjectType);
	const Value *v = member(object, name);
	return v && v->IsObject() ? *v : kEmpty;
}

template<typename F>
void forEach(const Value &object, const char *name, F &&f)
{
	const Value *v = member(object, name);
	if (!v || !v->IsArray())
		return;
	for (const Value &item : v->GetArray())
		f(item);
}

Error jsonError(std::string what)
{
	return makeError("kubectl's output is not what kubectl get -o json prints: " + std::move(what), EPROTO);
}

Result<rapidjson::Document> parseDocument(std::string_view json)
{
	rapidjson::Document doc;
	doc.Parse<rapidjson::kParseValidateEncodingFlag | rapidjson::kParseIterativeFlag>(json.data(), json.size());
	if (doc.HasParseError())
		return jsonError("invalid JSON at offset " + std::to_string(doc.GetErrorOffset()));
	if (!doc.IsObject())
		return jsonError("the document is not an object");
	return doc;
}

PodInfo readPod(const Value &pod)
{
	PodInfo info;
	const Value &metadata = objectAt(pod, "metadata");
	const Value &spec = objectAt(pod, "spec");
	const Value &status = objectAt(pod, "status");
	info.name = stringAt(metadata, "name");
	info.namespaceName = stringAt(metadata, "namespace");
	info.deleting = member(metadata, "deletionTimestamp") != nullptr &&
			!member(metadata, "deletionTimestamp")->IsNull();
	for (const auto &annotation : objectAt(metadata, "annotations").GetObject()) {
		if (annotation.value.IsString())
			info.annotations[annotation.name.GetString()] = annotation.value.GetString();
	}
	info.nodeName = stringAt(spec, "nodeName");
	forEach(spec, "containers", [&](const Value &c) {
		info.containers.push_back(stringAt(c, "name"));
		forEach(c, "ports", [&](const Value &port) {
			std::string name = stringAt(port, "name");
			const Value *number = member(port, "containerPort");
			if (!name.empty() && number && number->IsUint() && number->GetUint() >= 1 && number->GetUint() <= 65535)
				info.namedPorts.emplace(name, static_cast<uint16_t>(number->GetUint()));
		});
	});
	forEach(spec, "initContainers", [&](const Value &c) { info.initContainers.push_back(stringAt(c, "name")); });

	info.phase = stringAt(status, "phase");
	info.hostIp = stringAt(status, "hostIP");
	info.podIp = stringAt(status, "podIP");
	forEach(status, "conditions", [&](const Value &condition) {
		if (stringAt(condition, "type") == "Ready")
			info.ready = stringAt(condition, "status") == "True";
	});
	forEach(status, "containerStatuses", [&](const Value &s) {
		ContainerStatus cs;
		cs.name = stringAt(s, "name");
		cs.containerId = stringAt(s, "containerID");
		const Value *ready = member(s, "ready");
		cs.ready = ready && ready->IsBool() && ready->GetBool();
		const Value &state = objectAt(s, "state");
		cs.running = member(state, "running") != nullptr;
		if (const Value *waiting = member(state, "waiting"))
			cs.stateReason = "waiting: " + stringAt(*waiting, "reason");
		else if (const Value *terminated = member(state, "terminated"))
			cs.stateReason = "terminated: " + stringAt(*terminated, "reason");
		info.containerStatuses.push_back(std::move(cs));
	});
	return info;
}

std::string joined(const std::vector<std::string> &names)
{
	std::string text;
	for (const std::string &name : names)
		text += (text.empty() ? "" : ", ") + name;
	return text;
}

bool contains(const std::vector<std::string> &names, std::string_view name)
{
	return std::find(names.begin(), names.end(), name) != names.end();
}

std::string hostPort(const std::string &ip, uint16_t port)
{
	bool v6 = ip.find(':') != std::string::npos;
	return (v6 ? "[" + ip + "]" : ip) + ":" + std::to_string(port);
}

bool isLowerHex(std::string_view text)
{
	return std::all_of(text.begin(), text.end(), [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

// Why an agent pod cannot serve, or "" when it can.
std::string agentUnusable(const PodInfo &agent)
{
	if (agent.deleting)
		return "is being deleted";
	if (agent.phase != "Running")
		return "is " + (agent.phase.empty() ? std::string("in no phase") : agent.phase) + ", not Running";
	if (!agent.ready)
		return "is not Ready (ferryd does not answer on its API port yet)";
	if (agent.hostIp.empty())
		return "has no status.hostIP";
	return {};
}

} // namespace

Result<PodInfo> parsePod(std::string_view json)
{
	FERRY_TRY_ASSIGN(rapidjson::Document doc, parseDocument(json));
	std::string kind = stringAt(doc, "kind");
	if (kind != "Pod")
		return jsonError("expected kind Pod, got " + (kind.empty() ? std::string("none") : kind));
	PodInfo pod = readPod(doc);
	if (pod.name.empty())
		return jsonError("the pod has no metadata.name");
	return pod;
}

Result<std::vector<PodInfo>> parsePodList(std::string_view json)
{
	FERRY_TRY_ASSIGN(rapidjson::Document doc, parseDocument(json));
	std::string kind = stringAt(doc, "kind");
	if (kind != "List" && kind != "PodList")
		return jsonError("expected kind List or PodList, got " + (kind.empty() ? std::string("none") : kind));
	const Value *items = member(doc, "items");
	if (!items || !items->IsArray())
		return jsonError("the list has no items array");
	std::vector<PodInfo> pods;
	for (const Value &item : items->GetArray()) {
		if (stringAt(item, "kind") != "Pod" && member(item, "kind") != nullptr)
			continue;
		pods.push_back(readPod(item));
	}
	return pods;
}

Result<ContainerRef> parseContainerId(std::string_view containerId)
{
	size_t sep = containerId.find("://");
	if (sep == std::string_view::npos || sep == 0)
		return makeError("container id '" + std::string(containerId) + "' has no runtime prefix (runtime://id)",
				 EPROTO);
	std::string prefix(containerId.substr(0, sep));
	std::string_view id = containerId.substr(sep + 3);
	if (prefix == "docker" || prefix == "cri-dockerd")
		return makeError("the container runs under Docker (" + prefix +
				 "://): ferry moves containers of containerd or CRI-O, which run them with runc");
	if (prefix == "podman")
		return makeError("the container runs under podman (podman://) as a Kubernetes node runtime: ferry "
				 "moves containers of containerd or CRI-O here; use the ferry CLI for podman hosts");
	if (prefix != "containerd" && prefix != "cri-o")
		return makeError("the container runtime '" + prefix +
				 "' is not supported: ferry moves containers of containerd or CRI-O (runc)");
	if (id.size() != 64 || !isLowerHex(id))
		return makeError("container id '" + std::string(containerId) + "' is not " + prefix +
					 "://<64 hex digits>",
				 EPROTO);
	return ContainerRef{prefix, container::Runtime::Runc, std::string(id)};
}

Result<std::string> chooseContainer(const PodInfo &pod, std::string_view requested)
{
	if (!requested.empty()) {
		if (contains(pod.containers, requested))
			return std::string(requested);
		if (contains(pod.initContainers, requested))
			return makeError("container " + std::string(requested) + " of pod " + pod.name +
						 " is an init container; only the pod's containers can move: " +
						 joined(pod.containers),
					 EINVAL);
		return makeError("pod " + pod.name + " has no container " + std::string(requested) +
					 "; its containers: " + joined(pod.containers),
				 ENOENT);
	}
	if (auto it = pod.annotations.find(kDefaultContainerAnnotation); it != pod.annotations.end()) {
		if (!contains(pod.containers, it->second))
			return makeError("pod " + pod.name + " names " + it->second + " as its default container (" +
						 kDefaultContainerAnnotation + "), but has no such container; choose one with -c: " +
						 joined(pod.containers),
					 EINVAL);
		return it->second;
	}
	if (pod.containers.size() == 1)
		return pod.containers.front();
	if (pod.containers.empty())
		return makeError("pod " + pod.name + " has no containers", EPROTO);
	return makeError("pod " + pod.name + " has " + std::to_string(pod.containers.size()) +
				 " containers; choose one with -c: " + joined(pod.containers),
			 EINVAL);
}

Result<AgentEndpoint> findAgent(const std::vector<PodInfo> &agents, std::string_view node, const AgentLookup &lookup)
{
	const PodInfo *unusable = nullptr;
	for (const PodInfo &agent : agents) {
		if (agent.nodeName != node)
			continue;
		// A rolling update briefly has two agent pods on a node: the
		// one that serves wins over the one that leaves or starts.
		if (!agentUnusable(agent).empty()) {
			if (!unusable)
				unusable = &agent;
			continue;
		}
		uint16_t port = kDefaultAgentPort;
		if (auto it = agent.namedPorts.find(kApiPortName); it != agent.namedPorts.end())
			port = it->second;
		return AgentEndpoint{std::string(node), agent.namespaceName + "/" + agent.name,
				     lookup.scheme + "://" + hostPort(agent.hostIp, port)};
	}
	if (unusable)
		return makeError("ferryd pod " + unusable->namespaceName + "/" + unusable->name + " on node " +
				 std::string(node) + " " + agentUnusable(*unusable));
	return makeError("no ferryd pod on node " + std::string(node) + " (selector " + lookup.selector + " in " +
				 lookup.namespaceName + ")",
			 ENOENT);
}

Result<Resolution> resolveFrom(const PodInfo &pod, const std::vector<PodInfo> &agents, const ResolveOptions &options)
{
	auto fail = [&](Error error) { return std::move(error).at("namespace", pod.namespaceName).at("pod", pod.name); };
	if (options.toNode.empty())
		return fail(makeError("--to-node is required: the node the pod moves to", EINVAL));
	if (pod.nodeName.empty())
		return fail(makeError("pod " + pod.name + " is not scheduled to a node yet (phase " +
				      (pod.phase.empty() ? std::string("unknown") : pod.phase) + ")"));
	if (pod.deleting)
		return fail(makeError("pod " + pod.name + " is being deleted"));
	if (pod.phase != "Running")
		return fail(makeError("pod " + pod.name + " is " + (pod.phase.empty() ? std::string("in no phase") : pod.phase) +
				      ", not Running"));
	if (options.toNode == pod.nodeName)
		return fail(makeError("pod " + pod.name + " already runs on node " + pod.nodeName +
					      "; --to-node must name another node",
				      EINVAL));

	auto name = chooseContainer(pod, options.container);
	if (!name.ok())
		return fail(std::move(name).error());
	auto status = std::find_if(pod.containerStatuses.begin(), pod.containerStatuses.end(),
				   [&](const ContainerStatus &s) { return s.name == *name; });
	if (status == pod.containerStatuses.end())
		return fail(makeError("container " + *name + " of pod " + pod.name + " has no status yet (not started)"));
	if (!status->running)
		return fail(makeError("container " + *name + " of pod " + pod.name + " is not running" +
				      (status->stateReason.empty() ? std::string() : " (" + status->stateReason + ")")));
	if (status->containerId.empty())
		return fail(makeError("container " + *name + " of pod " + pod.name + " has no containerID yet"));
	auto ref = parseContainerId(status->containerId);
	if (!ref.ok())
		return fail(std::move(ref).error().at("container", *name));

	auto source = findAgent(agents, pod.nodeName, options.agents);
	if (!source.ok())
		return fail(std::move(source).error());
	auto destination = findAgent(agents, options.toNode, options.agents);
	if (!destination.ok())
		return fail(std::move(destination).error());

	Resolution resolution;
	resolution.podName = pod.name;
	resolution.podNamespace = pod.namespaceName;
	resolution.podIp = pod.podIp;
	resolution.node = pod.nodeName;
	resolution.toNode = options.toNode;
	resolution.containerName = *name;
	resolution.container = std::move(*ref);
	resolution.source = std::move(*source);
	resolution.destination = std::move(*destination);
	return resolution;
}

std::vector<std::string> podQuery(const ResolveOptions &options)
{
	std::vector<std::string> args = {"get", "pod", options.pod};
	if (!options.namespaceName.empty())
		args.push_back("--namespace=" + options.namespaceName);
	args.insert(args.end(), {"--output=json"});
	return args;
}

std::vector<std::string> agentQuery(const AgentLookup &lookup)
{
	return {"get", "pods", "--namespace=" + lookup.namespaceName, "--selector=" + lookup.selector, "--output=json"};
}

Result<Resolution> resolve(const KubectlRunner &kubectl, const ResolveOptions &options)
{
	if (options.toNode.empty())
		return makeError("--to-node is required: the node the pod moves to", EINVAL);
	FERRY_TRY_ASSIGN(std::string podJson, kubectl.run(podQuery(options)));
	FERRY_TRY_ASSIGN(PodInfo pod, parsePod(podJson));
	FERRY_TRY_ASSIGN(std::string agentsJson, kubectl.run(agentQuery(options.agents)));
	FERRY_TRY_ASSIGN(std::vector<PodInfo> agents, parsePodList(agentsJson));
	return resolveFrom(pod, agents, options);
}

} // namespace ferry::kubectl
