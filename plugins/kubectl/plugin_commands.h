// The kubectl-ferry commands: resolve through kubectl, then drive the
// migration through the source agent (api::AgentClient).
//
// Output follows the `ferry` command (docs/cli.md) so that one script can
// drive both: text for people; with -o json exactly one JSON document on
// stdout (the final MigrationStatus, the --dry-run resolution, or the
// protocol's error body on failure); progress on stdout in text mode, on
// stderr with -o json and only when stderr is a terminal. Errors go to
// stderr as "kubectl ferry <command>: <doing>: <error>", with a hint.
//
// Exit codes are cli::ExitCode (docs/cli.md, docs/kubectl.md); what a
// failed resolution maps to is exitCodeForResolution().
#pragma once

#include <cstdio>
#include <string>

#include "cli/output.h"
#include "kubectl_runner.h"
#include "plugin_command_line.h"
#include "pod_resolution.h"

namespace ferry::kubectl {

// Where a command writes, and whether a person watches (TTY): progress is
// one line rewritten in place on a terminal, one line per event otherwise.
struct Terminal {
	std::FILE *out = stdout;
	std::FILE *err = stderr;
	bool outIsTty = false;
	bool errIsTty = false;
	unsigned outColumns = 0; // 0: unknown
	unsigned errColumns = 0;
};

// The exit code for an error of resolve() (or of kubectl):
//   EINVAL → Usage (a choice the user must make: -c, --to-node, a context)
//   ENOENT → NotFound (pod, container, ferryd on a node)
//   EACCES/EPERM → Refused (the API server said Forbidden/Unauthorized)
//   ECONNREFUSED/ETIMEDOUT/... → Unreachable (the API server)
//   anything else → Failed (the pod cannot move as it is)
cli::ExitCode exitCodeForResolution(const Error &error);

// --dry-run, for people: one "field  value" line each.
std::string dryRunText(const Resolution &resolution, const migration::MigrationRequest &request);
// --dry-run -o json, one line:
//   {"pod":{"name","namespace","ip","node"},
//    "container":{"name","id","criRuntime","runtime"},
//    "toNode", "sourceAgent":{"node","pod","url"},
//    "destinationAgent":{"node","pod","url"},
//    "request": <the MigrationRequest as POST /v1/migrations takes it>}
std::string dryRunJson(const Resolution &resolution, const migration::MigrationRequest &request);

// `kubectl ferry version`: "kubectl-ferry 0.1.0", or {"version":"0.1.0"}.
cli::ExitCode runVersion(const PluginCommandLine &line, Terminal &terminal);

// `kubectl ferry migrate`: resolve, then (unless --dry-run) start the
// migration on the source agent and follow it to the end. Ok only when it
// committed (or started, with --no-wait; or resolved, with --dry-run).
cli::ExitCode runMigrate(const PluginCommandLine &line, const KubectlRunner &kubectl, Terminal &terminal);

} // namespace ferry::kubectl
