// The `ferry` commands, each run against an agent through AgentClient.
//
// Each run*() prints its result to terminal.out (text, or one JSON document
// with -o json), errors and hints to terminal.err, and returns the exit
// code (output.h). Nothing here reads the command line or the environment:
// main() parses, loads the credentials and connects, then calls one of
// these.
#pragma once

#include <cstdio>

#include "api/agent_client.h"
#include "command_line.h"
#include "output.h"

namespace ferry::cli {

// Where a command writes. The TTY flags decide how progress is shown: a
// line rewritten in place on a terminal, one line per event otherwise.
struct Terminal {
	std::FILE *out = stdout;
	std::FILE *err = stderr;
	bool outIsTty = false;
	bool errIsTty = false;
	// Width of the TTYs (0: unknown). A live line longer than its
	// terminal would wrap, and "\r" could no longer take it back.
	unsigned outColumns = 0;
	unsigned errColumns = 0;
};

// Starts the migration on the source agent; unless --no-wait, follows its
// events to the end and prints the final MigrationStatus. Ok only when it
// committed (or, with --no-wait, started); Refused when it aborted because
// the destination refused the source agent (401/403, refusalStatus() in
// output.h); Failed when it aborted otherwise.
ExitCode runMigrate(const CommandLine &line, api::AgentClient &agent, Terminal &terminal);
// Ok when shown, Failed when the migration aborted (Refused when the
// destination refused it, as for migrate), NotFound for an unknown id.
ExitCode runStatus(const CommandLine &line, api::AgentClient &agent, Terminal &terminal);
ExitCode runList(const CommandLine &line, api::AgentClient &agent, Terminal &terminal);
// Aborts, then prints the migration's status as the agent reports it.
ExitCode runAbort(const CommandLine &line, api::AgentClient &agent, Terminal &terminal);

// Prints what went wrong to terminal.err ("ferry <command>: <doing>: <error>"
// and a hint for the exit code), and with -o json the protocol's error body
// to terminal.out. Returns exitCodeFor(error).
ExitCode reportError(const CommandLine &line, Terminal &terminal, std::string_view doing, const Error &error);

} // namespace ferry::cli
