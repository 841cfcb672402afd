// The `ferry` command line: what the user typed, parsed and checked.
//
// Parsing is a pure function of the arguments and an environment lookup (no
// globals, no I/O, no getenv inside): main() hands in argv and getenv, the
// unit tests hand in vectors and maps. Every mistake is an EINVAL Error
// whose text names the flag or argument and what was wrong with it; the
// caller prints it and exits with ExitCode::Usage (2).
//
//   ferry [common flags] <command> [command flags and common flags]
//
// Common flags may come before or after the command. "--flag value" and
// "--flag=value" are both accepted; "-o json" and "-ojson" too. A flag
// that is not repeatable may be given once.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "migration/migration_service.h"

namespace ferry::cli {

inline constexpr const char *kDefaultAgentUrl = "http://127.0.0.1:7411";
inline constexpr const char *kAgentEnvironmentVariable = "FERRY_AGENT";
inline constexpr const char *kDefaultAbortReason = "aborted by the operator (ferry abort)";
// The protocol refuses longer abort reasons (docs/protocol.md).
inline constexpr size_t kMaxAbortReasonBytes = 4096;

enum class Command { None, Migrate, Status, List, Abort, Doctor };
enum class OutputFormat { Text, Json };

// The command's name as typed ("migrate"), "" for None.
const char *commandName(Command command);

// Flags every command takes: how to reach and authenticate to the agent,
// and how to print.
struct CommonOptions {
	std::string agentUrl = kDefaultAgentUrl; // --agent, else $FERRY_AGENT, else the default
	bool agentGiven = false;                 // --agent was on the command line
	std::string tokenFile;                   // --token-file
	std::string caFile;                      // --cacert
	std::string certFile;                    // --cert (needs --key)
	std::string keyFile;                     // --key (needs --cert)
	std::chrono::milliseconds timeout{30000}; // --timeout: each request (not the event stream)
	OutputFormat output = OutputFormat::Text; // -o / --output
};

struct MigrateOptions {
	// selection, targetAgent, targetNetns, addresses, handoff, lockStrategy
	// as the flags give them; sent as is to the source agent.
	migration::MigrationRequest request;
	std::string sourceAgent; // --from; empty: the agent of CommonOptions
	bool wait = true;        // false with --no-wait
};

struct CommandLine {
	Command command = Command::None;
	bool help = false;    // -h/--help: print usage(command) and exit 0
	bool version = false; // --version
	CommonOptions common;
	MigrateOptions migrate;  // Command::Migrate
	std::string migrationId; // Command::Status, Command::Abort
	std::string abortReason = kDefaultAbortReason; // Command::Abort

	// Where the command's agent calls go: --from for migrate when given,
	// else the common agent.
	const std::string &agentUrl() const
	{
		return command == Command::Migrate && !migrate.sourceAgent.empty() ? migrate.sourceAgent
										   : common.agentUrl;
	}
};

// Looks up an environment variable (nullopt: unset).
using EnvironmentLookup = std::function<std::optional<std::string>(std::string_view name)>;

// Parses the arguments after the program name. With --help anywhere the
// result has help set and the remaining arguments are not checked for
// completeness (required flags may be missing), only the command is found.
Result<CommandLine> parseCommandLine(const std::vector<std::string> &args, const EnvironmentLookup &environment);

// Usage text for one command ("ferry migrate ..."), or the overview for
// Command::None. Ends with a newline.
std::string usage(Command command);

// "CIDR@SRCIF[:DSTIF]", e.g. "198.51.100.10/24@eth0" or
// "2001:db8::10/64@eth0:eth1". The address keeps its host bits (it is an
// interface address, not a range); DSTIF defaults to SRCIF. Interface names
// follow the kernel's rule: 1..15 bytes, no '/', ':' or whitespace.
Result<migration::AddressMove> parseAddressSpec(std::string_view spec);

// Splits --exec's text into argv with simple shell-like quoting:
// whitespace separates words; '...' keeps everything literally; "..."
// keeps everything but lets \" \\ \$ \` escape; a backslash outside quotes
// escapes the next character. No expansion of any kind ($VAR, ~, globs).
// EINVAL for an unterminated quote, a trailing backslash or no word.
Result<std::vector<std::string>> splitCommand(std::string_view text);

// "K=V" for --env: K is [A-Za-z_][A-Za-z0-9_]*, V may be empty.
Result<std::pair<std::string, std::string>> parseEnvironmentAssignment(std::string_view text);

// A positive duration: "250ms", "30s", "2m", or a bare number of seconds.
Result<std::chrono::milliseconds> parseDuration(std::string_view text);

} // namespace ferry::cli
