// The kubectl-ferry command line, parsed and checked.
//
// kubectl runs a plugin named kubectl-ferry for `kubectl ferry ...` and
// hands it every argument after "ferry" as is; it parses none of them for
// the plugin. So the plugin takes kubectl's own conventions itself:
// -n/--namespace, --context, --kubeconfig, -o json, -h/--help, and says
// "kubectl ferry" in its usage text.
//
//   kubectl ferry [flags] <command> [flags]
//   kubectl ferry migrate POD [-c CONTAINER] --to-node NODE --target-netns NS [flags]
//   kubectl ferry version
//
// Flags may come before or after the command. "--flag value" and
// "--flag=value" are both accepted; "-n NS", "-nNS", "-o json" and "-ojson"
// too. A flag that is not repeatable may be given once.
//
// Parsing is a pure function of the arguments (no environment, no I/O).
// Every mistake is an EINVAL Error naming the flag or argument; main()
// prints it and exits with cli::ExitCode::Usage (2).
#pragma once

#include <chrono>
#include <string>
#include <vector>

#include "base/error.h"
#include "cli/command_line.h"
#include "kubectl_runner.h"
#include "migration/migration_service.h"
#include "pod_resolution.h"

namespace ferry::kubectl {

enum class Command { None, Migrate, Version };

// The command's name as typed ("migrate"), "" for None.
const char *commandName(Command command);

// How to reach and authenticate to the agents (as the `ferry` CLI takes it).
struct AgentAccess {
	std::string tokenFile; // --token-file
	std::string caFile;    // --cacert
	std::string certFile;  // --cert (needs --key)
	std::string keyFile;   // --key (needs --cert)
	std::chrono::milliseconds timeout{30000}; // --timeout: each request to an agent
};

struct PluginCommandLine {
	Command command = Command::None;
	bool help = false; // -h/--help anywhere: print pluginUsage(command), exit 0
	KubectlGlobals kube;
	cli::OutputFormat output = cli::OutputFormat::Text;

	// migrate
	ResolveOptions resolve;  // pod, -n, -c, --to-node, --agent-*
	// What the flags give of the request: targetNetns, addresses,
	// lockStrategy, selection.localPorts and includeListeners. The
	// container and the target agent come from the resolution
	// (buildRequest).
	migration::MigrationRequest request;
	migration::ContainerSelection::Freeze freeze = migration::ContainerSelection::Freeze::Cgroup;
	AgentAccess access;
	bool dryRun = false;     // --dry-run: resolve and print, contact no agent
	bool wait = true;        // false with --no-wait
};

// Parses the arguments after the program name.
Result<PluginCommandLine> parsePluginCommandLine(const std::vector<std::string> &args);

// Usage text for a command, or the overview for Command::None; written as
// "kubectl ferry ...". Ends with a newline.
std::string pluginUsage(Command command);

// The request for the source agent: the flags' fields, plus the resolved
// container (selection.container, runtime runc) and the destination agent.
migration::MigrationRequest buildRequest(const PluginCommandLine &line, const Resolution &resolution);

} // namespace ferry::kubectl
