// What `ferry` prints, and the exit code it ends with.
//
// Pure functions from values to text, so that the unit tests pin the
// format down without an agent. JSON output is the protocol's own encoding
// (api/schemas.h): `ferry status -o json` prints exactly the body of
// GET /v1/migrations/{id}, so scripts need one schema, not two.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "base/error.h"
#include "migration/migration_service.h"

namespace ferry::cli {

// Documented in docs/cli.md; scripts depend on these numbers.
enum class ExitCode : int {
	Ok = 0,          // success; for migrate: the migration committed
	Failed = 1,      // the migration aborted, or the agent refused the request for another reason
	Usage = 2,       // bad command line (or an unreadable --token-file)
	Unreachable = 3, // cannot reach the agent: connection, TLS, timeout
	Refused = 4,     // an agent refused the credentials or the permission (401/403): the one
	                 // asked, or for migrate the destination, which refused the source agent
	NotFound = 5,    // no such migration
};

// The exit code for an error from an AgentClient call. Transport failures
// carry the errno libcurl's failure maps to (ECONNREFUSED, EHOSTUNREACH,
// ETIMEDOUT, ECONNRESET, EPROTO) and name the URL they tried; an HTTP
// answer carries the errno of its status (EACCES for 401/403, ENOENT for
// 404, EIO for a 500 without a code) and names the status instead. EIO is
// the one code both produce, so the "url=" field decides it.
ExitCode exitCodeFor(const Error &error);

// The HTTP status (401 or 403) with which an agent that the migration's
// agent called (the destination, for a source) refused it, when that is why
// it aborted; 0 otherwise. The status carries the cause as text only: the
// engine records Error::message(), "what: strerror [context]", and
// errorFromResponse() (agent_client.cpp) puts the answer's "status=NNN" in
// the context. Only the outermost context counts (after the last " [", up
// to the closing "]"), so a refusal quoted inside another error's message
// (a destination's own abort reason) does not.
int refusalStatus(const migration::MigrationStatus &status);

// The exit code for a migration as it stands: Refused when it aborted
// because the destination refused it (refusalStatus), Failed for any other
// abort, Ok otherwise (committed, or still in progress).
ExitCode exitCodeFor(const migration::MigrationStatus &status);

// "812 B", "47.1 KiB", "3.2 MiB", "1.50 GiB".
std::string formatBytes(uint64_t bytes);
// "870 us", "3.87 ms", "152 ms", "1.52 s", "2m05s".
std::string formatDuration(std::chrono::microseconds duration);
// RFC 3339 UTC with microseconds, as the protocol writes times.
std::string formatTime(std::chrono::system_clock::time_point time);

// One progress line, no newline:
//   "streaming   3/12 connections   20.0 KiB   1.83 ms   dumping"
std::string progressText(const migration::MigrationEvent &event);

// The end of `ferry migrate`, several lines:
//   "migration m-1 committed" or "migration m-1 aborted: <error>",
//   then connections, bytes, blackout, lock window, total.
std::string resultText(const migration::MigrationStatus &status);

// `ferry status`: one "field  value" line per field.
std::string statusText(const migration::MigrationStatus &status);

// `ferry list`: a table with a header, or "no migrations\n".
std::string listText(const std::vector<migration::MigrationStatus> &migrations);

// `ferry list -o json`: {"migrations": [...]}, as the protocol's list.
std::string listJson(const std::vector<migration::MigrationStatus> &migrations);

// One check of `ferry doctor`.
struct DoctorCheck {
	std::string name;     // "kernel: TCP_REPAIR"
	bool required = true; // a failed required check fails the doctor
	bool ok = false;
	std::string detail;   // one line: why it passed or failed
};

// "ok    name: detail" / "FAIL  name: detail" per check, "(optional)" after
// the name of a check that is not required, and a closing verdict line.
std::string doctorText(const std::vector<DoctorCheck> &checks);
// {"ok": bool, "checks": [{"name", "required", "ok", "detail"}, ...]}
std::string doctorJson(const std::vector<DoctorCheck> &checks);
// Whether every required check passed.
bool doctorPassed(const std::vector<DoctorCheck> &checks);

} // namespace ferry::cli
