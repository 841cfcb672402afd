// Routes of API v1 and the mapping of errors to HTTP statuses.
//
// Pure functions: the server asks matchRoute() what a request is before it
// reads a byte of the body, so that an unknown path (404) or a wrong
// method (405) is answered without buffering anything.
#pragma once

#include <string>
#include <string_view>

#include "base/error.h"

namespace ferry::api {

enum class RouteId {
	Info,            // GET  /v1/info
	Metrics,         // GET  /metrics
	StartMigration,  // POST /v1/migrations
	ListMigrations,  // GET  /v1/migrations
	MigrationStatus, // GET  /v1/migrations/{id}
	AbortMigration,  // POST /v1/migrations/{id}/abort
	MigrationEvents, // GET  /v1/migrations/{id}/events
	PrepareIncoming, // POST /v1/incoming
	ReceiveImage,    // PUT  /v1/incoming/{id}/image
	ReceiveState,    // PUT  /v1/incoming/{id}/state
	CommitIncoming,  // POST /v1/incoming/{id}/commit
	// The container registry (issue 5), filled by ferry-oci-hook.
	RegisterContainer,   // POST   /v1/containers
	ListContainers,      // GET    /v1/containers
	ContainerStatus,     // GET    /v1/containers/{id}  (id, name or unique id prefix)
	DeregisterContainer, // DELETE /v1/containers/{id}  (the exact id)
};

struct RouteMatch {
	// 0 when the route matched; else 404 (no such path), 405 (the path
	// exists for other methods, listed in `allow`) or 400 (a malformed id:
	// a migration id, or a container id or name on the container routes).
	int status = 0;
	RouteId route = RouteId::Info;
	std::string id;    // the {id} segment, when the route has one
	std::string allow; // for 405: "GET, POST"
	std::string why;   // for 400: what is wrong with the id
};

RouteMatch matchRoute(std::string_view method, std::string_view path);

// Whether the route carries a JSON request body (POST with a body).
bool takesJsonBody(RouteId route);

// Error.code → HTTP status, as migration_service.h defines it:
//   EINVAL 400 · EACCES/EPERM 403 · ENOENT 404 · EEXIST/EBUSY/EALREADY 409
//   E2BIG/EFBIG 413 · ETIMEDOUT 504 · EAGAIN 503 · anything else 500.
int httpStatusFor(const Error &error);

} // namespace ferry::api
