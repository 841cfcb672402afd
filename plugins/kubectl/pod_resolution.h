// Pod resolution: from "pod web-0, to node worker-2" to what a migration
// request needs: the container's runtime id on its node, and the ferryd
// agents on the pod's node and on the destination node.
//
// Two kubectl calls (KubectlRunner), nothing else:
//   kubectl get pod POD [--namespace=NS] -o json
//   kubectl get pods --namespace=AGENT_NS --selector=AGENT_SELECTOR -o json
// The parsing and the choices are pure functions of their JSON, so that
// they are tested against recorded `kubectl get -o json` output.
//
// Rules (docs/kubectl.md says them to users):
//   - the pod must be scheduled (spec.nodeName), Running, not being
//     deleted;
//   - the container is -c, else the pod's
//     kubectl.kubernetes.io/default-container annotation (kubectl's own
//     convention), else the only container; a pod with several and no
//     choice is an error that lists them. Init and ephemeral containers
//     never move;
//   - the container must be running and have a containerID. Its prefix
//     names the CRI runtime: "containerd://" and "cri-o://" run their
//     containers with runc, which ferryd drives (the node's ferryd config
//     names the runc root: /run/containerd/runc/k8s.io for containerd,
//     /run/runc for CRI-O); "docker://", "podman://", "cri-dockerd://" and
//     anything else are refused by name;
//   - an agent is a pod of the agent selector in the agent namespace, on
//     the node, Running, not being deleted; with hostNetwork its
//     status.hostIP is the node's address. Its URL is
//     SCHEME://HOSTIP:PORT where PORT is the containerPort named "api"
//     (kApiPortName), else kDefaultAgentPort. IPv6 addresses get brackets.
//
// Every error names what is missing and where, e.g. "no ferryd pod on node
// worker-2 (selector app.kubernetes.io/name=ferryd in ferry-system)".
// Codes: EINVAL for a choice the user must make or fix (-c, --to-node),
// ENOENT for something that does not exist (pod, container, agent), 0 for
// a state that refuses the move (not running, unsupported runtime),
// EPROTO for JSON that is not what kubectl prints.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "container/container.h"
#include "kubectl_runner.h"

namespace ferry::kubectl {

inline constexpr const char *kDefaultAgentSelector = "app.kubernetes.io/name=ferryd";
inline constexpr const char *kDefaultAgentNamespace = "ferry-system";
inline constexpr const char *kApiPortName = "api";
inline constexpr uint16_t kDefaultAgentPort = 7411;
inline constexpr const char *kDefaultContainerAnnotation = "kubectl.kubernetes.io/default-container";

// One container's entry of status.containerStatuses.
struct ContainerStatus {
	std::string name;
	std::string containerId; // "containerd://<64 hex>"; "" before it started
	bool running = false;    // state.running is present
	bool ready = false;
	std::string stateReason; // "waiting: CrashLoopBackOff", "terminated: Error"; "" when running
};

// What kubectl-ferry reads of a Pod.
struct PodInfo {
	std::string name;
	std::string namespaceName;
	std::string nodeName;               // spec.nodeName; "" = not scheduled
	std::string phase;                  // status.phase
	bool deleting = false;              // metadata.deletionTimestamp is set
	bool ready = false;                 // condition Ready is True
	std::string hostIp;                 // status.hostIP
	std::string podIp;                  // status.podIP
	std::vector<std::string> containers;     // spec.containers[].name, in order
	std::vector<std::string> initContainers; // spec.initContainers[].name
	std::map<std::string, std::string> annotations;
	std::map<std::string, uint16_t> namedPorts; // containerPort by name, over all containers
	std::vector<ContainerStatus> containerStatuses;
};

// One Pod object (`kubectl get pod NAME -o json`).
Result<PodInfo> parsePod(std::string_view json);
// A list (`kubectl get pods -l ... -o json`: kind "List" or "PodList").
Result<std::vector<PodInfo>> parsePodList(std::string_view json);

// The CRI runtime's word for a container, and how ferryd reaches it.
struct ContainerRef {
	std::string criRuntime;     // the containerID's prefix: "containerd", "cri-o"
	container::Runtime runtime = container::Runtime::Runc; // what ferryd drives
	std::string id;             // the runtime's container id (64 hex)
};

// "containerd://<id>" / "cri-o://<id>" → ContainerRef; refuses other
// prefixes and ids that are not 64 lower-case hex digits.
Result<ContainerRef> parseContainerId(std::string_view containerId);

// The container of `pod` to move: `requested` (-c) if given, else the
// default-container annotation, else the only container.
Result<std::string> chooseContainer(const PodInfo &pod, std::string_view requested);

struct AgentEndpoint {
	std::string node;
	std::string pod;            // "ferry-system/ferryd-7xk2p"
	std::string url;            // "https://10.0.0.11:7411"
};

struct AgentLookup {
	std::string selector = kDefaultAgentSelector;   // --agent-selector
	std::string namespaceName = kDefaultAgentNamespace; // --agent-namespace
	std::string scheme = "https";                   // --agent-scheme: "https" or "http"
};

// The agent on `node` among `agents` (the selector's pods).
Result<AgentEndpoint> findAgent(const std::vector<PodInfo> &agents, std::string_view node, const AgentLookup &lookup);

// What the user asked to resolve.
struct ResolveOptions {
	std::string pod;
	std::string namespaceName; // -n; "" = the kubeconfig context's namespace
	std::string container;     // -c; "" = see chooseContainer
	std::string toNode;        // --to-node
	AgentLookup agents;
};

struct Resolution {
	std::string podName;
	std::string podNamespace;
	std::string podIp;
	std::string node;          // where the pod runs now
	std::string toNode;
	std::string containerName;
	ContainerRef container;
	AgentEndpoint source;      // ferryd on `node`
	AgentEndpoint destination; // ferryd on `toNode`
};

// The choices, given the pod and the agent pods as kubectl printed them.
Result<Resolution> resolveFrom(const PodInfo &pod, const std::vector<PodInfo> &agents, const ResolveOptions &options);

// The two kubectl calls above, then resolveFrom().
Result<Resolution> resolve(const KubectlRunner &kubectl, const ResolveOptions &options);

// The kubectl arguments (after the global flags) of the two calls.
std::vector<std::string> podQuery(const ResolveOptions &options);
std::vector<std::string> agentQuery(const AgentLookup &lookup);

} // namespace ferry::kubectl
