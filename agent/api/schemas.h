// JSON wire format of API v1: encode and decode every type that crosses
// HTTP (agent/migration/migration_service.h, plus the API's own bodies).
//
// Used by the server (agent/api), the CLI and the peer client, so this
// header pulls in neither httplib nor RapidJSON: callers see only text in
// and values out.
//
// Decoding is strict, because a request that means something other than
// what its sender thought is worse than a refused one:
//   - every field of a type is required unless the type's comment in
//     docs/protocol.md says it is optional;
//   - an unknown field, a duplicate field, a wrong JSON type, an integer out
//     of range for its C++ type, a string with a NUL byte, invalid UTF-8,
//     nesting deeper than kMaxJsonDepth → EINVAL;
// and the Error's text names the field by its path from the top of the
// document, e.g. "connections[3].flow.local: expected string".
//
// Names on the wire are camelCase. Durations are integers whose unit is in
// the field name (commitDeadlineMs, blackoutUs); times are RFC 3339 UTC
// strings with microseconds ("2026-11-22T10:00:00.000123Z"); a timing that
// has not happened yet is null. Phases and roles are lower-case words
// ("streaming", "destination").
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "migration/migration_service.h"

namespace ferry::api {

// Nesting deeper than this is refused before a document is built: the
// deepest legitimate body (a MigrationRequest) is 4 levels deep.
inline constexpr unsigned kMaxJsonDepth = 32;

// Migration ids appear in URL paths and file names in the state directory.
inline constexpr size_t kMaxIdLength = 128;
// 1..kMaxIdLength characters of [A-Za-z0-9._-], not "." or "..".
bool isValidMigrationId(std::string_view id);

// Body of POST /v1/migrations/{id}/abort.
struct AbortRequest {
	std::string reason;
};

// The error body read back by a client (see toJson(const Error &)).
struct ErrorReply {
	Error error;
};

// Body of GET /v1/migrations.
struct MigrationList {
	std::vector<migration::MigrationStatus> migrations;
};

// Wire names of phases and roles ("negotiating", "source").
const char *phaseName(migration::Phase phase);
Result<migration::Phase> parsePhase(std::string_view name);
const char *roleName(migration::Role role);
Result<migration::Role> parseRole(std::string_view name);

// Compact JSON text (no newlines, so one document fits one SSE data line).
std::string toJson(const migration::MigrationRequest &value);
std::string toJson(const migration::PrepareRequest &value);
std::string toJson(const migration::PrepareReply &value);
// An empty object: the workload's state travels on its own route.
std::string toJson(const migration::CommitRequest &value);
std::string toJson(const migration::ImageReceipt &value);
std::string toJson(const migration::MigrationStatus &value);
std::string toJson(const migration::MigrationEvent &value);
std::string toJson(const migration::AgentInfo &value);
std::string toJson(const migration::MetricsSnapshot &value);
std::string toJson(const AbortRequest &value);
std::string toJson(const MigrationList &value);
// The error body every failed call returns:
//   {"error": {"message": what, "context": context, "code": "ENOENT"}}
// ("code" is the errno's name, or "" when the Error has code 0).
std::string toJson(const Error &value);

// Parses and validates one JSON document into T. Defined for every type
// toJson() takes, with ErrorReply standing for Error (an unknown errno
// name decodes as code 0).
template<typename T>
Result<T> fromJson(std::string_view text);

extern template Result<migration::MigrationRequest> fromJson(std::string_view);
extern template Result<migration::PrepareRequest> fromJson(std::string_view);
extern template Result<migration::PrepareReply> fromJson(std::string_view);
extern template Result<migration::CommitRequest> fromJson(std::string_view);
extern template Result<migration::ImageReceipt> fromJson(std::string_view);
extern template Result<migration::MigrationStatus> fromJson(std::string_view);
extern template Result<migration::MigrationEvent> fromJson(std::string_view);
extern template Result<migration::AgentInfo> fromJson(std::string_view);
extern template Result<migration::MetricsSnapshot> fromJson(std::string_view);
extern template Result<AbortRequest> fromJson(std::string_view);
extern template Result<MigrationList> fromJson(std::string_view);
extern template Result<ErrorReply> fromJson(std::string_view);

// errno name ("ENOENT") of a code, "" for 0 or an unknown code, and back.
std::string errnoName(int code);
int errnoFromName(std::string_view name);

} // namespace ferry::api
