#include "routes.h"

#include <vector>

#include "container_schemas.h"
#include "schemas.h"

namespace ferry::api {

namespace {

struct RouteSpec {
	const char *method;
	const char *pattern; // "{id}" matches one path segment
	RouteId route;
};

constexpr RouteSpec kRoutes[] = {
	{"GET", "/v1/info", RouteId::Info},
	{"GET", "/metrics", RouteId::Metrics},
	{"POST", "/v1/migrations", RouteId::StartMigration},
	{"GET", "/v1/migrations", RouteId::ListMigrations},
	{"GET", "/v1/migrations/{id}", RouteId::MigrationStatus},
	{"POST", "/v1/migrations/{id}/abort", RouteId::AbortMigration},
	{"GET", "/v1/migrations/{id}/events", RouteId::MigrationEvents},
	{"POST", "/v1/incoming", RouteId::PrepareIncoming},
	{"PUT", "/v1/incoming/{id}/image", RouteId::ReceiveImage},
	{"PUT", "/v1/incoming/{id}/state", RouteId::ReceiveState},
	{"POST", "/v1/incoming/{id}/commit", RouteId::CommitIncoming},
	{"POST", "/v1/containers", RouteId::RegisterContainer},
	{"GET", "/v1/containers", RouteId::ListContainers},
	{"GET", "/v1/containers/{id}", RouteId::ContainerStatus},
	{"DELETE", "/v1/containers/{id}", RouteId::DeregisterContainer},
};

bool isContainerRoute(RouteId route)
{
	return route == RouteId::ContainerStatus || route == RouteId::DeregisterContainer;
}

std::vector<std::string_view> segments(std::string_view path)
{
	std::vector<std::string_view> out;
	// The leading '/' is required; "" and "//x" yield an empty segment,
	// which no pattern matches.
	if (path.empty() || path.front() != '/')
		return {std::string_view{}};
	path.remove_prefix(1);
	while (true) {
		size_t slash = path.find('/');
		out.push_back(path.substr(0, slash));
		if (slash == std::string_view::npos)
			break;
		path.remove_prefix(slash + 1);
	}
	return out;
}

// Matches `path` against `pattern`; on success `id` holds the {id} segment.
bool matches(std::string_view pattern, const std::vector<std::string_view> &path, std::string_view &id)
{
	auto want = segments(pattern);
	if (want.size() != path.size())
		return false;
	for (size_t i = 0; i < want.size(); ++i) {
		if (want[i] == "{id}") {
			if (path[i].empty())
				return false;
			id = path[i];
		} else if (want[i] != path[i]) {
			return false;
		}
	}
	return true;
}

} // namespace

RouteMatch matchRoute(std::string_view method, std::string_view path)
{
	auto parts = segments(path);
	RouteMatch result;
	result.status = 404;
	for (const RouteSpec &spec : kRoutes) {
		std::string_view id;
		if (!matches(spec.pattern, parts, id))
			continue;
		if (method != spec.method) {
			result.status = 405;
			if (result.allow.find(spec.method) == std::string::npos)
				result.allow += (result.allow.empty() ? "" : ", ") + std::string(spec.method);
			continue;
		}
		result.route = spec.route;
		result.id = std::string(id);
		result.allow.clear();
		if (!id.empty() && isContainerRoute(spec.route)) {
			if (!isValidContainerId(id)) {
				result.status = 400;
				result.why = "container id or name in the path: expected 1.." +
					     std::to_string(kMaxContainerIdLength) +
					     " characters of A-Z a-z 0-9 . _ + -, starting with a letter or digit";
				return result;
			}
		} else if (!id.empty() && !isValidMigrationId(id)) {
			result.status = 400;
			result.why = "migration id in the path: expected 1.." + std::to_string(kMaxIdLength) +
				     " characters of A-Z a-z 0-9 . _ -";
			return result;
		}
		result.status = 0;
		return result;
	}
	return result;
}

bool takesJsonBody(RouteId route)
{
	return route == RouteId::StartMigration || route == RouteId::AbortMigration || route == RouteId::PrepareIncoming ||
	       route == RouteId::CommitIncoming || route == RouteId::RegisterContainer;
}

int httpStatusFor(const Error &error)
{
	switch (error.code) {
	case EINVAL:
		return 400;
	case EACCES:
	case EPERM:
		return 403;
	case ENOENT:
		return 404;
	case EEXIST:
	case EBUSY:
	case EALREADY:
		return 409;
	case E2BIG:
	case EFBIG:
		return 413;
	case ETIMEDOUT:
		return 504;
	case EAGAIN:
		return 503;
	default:
		return 500;
	}
}

} // namespace ferry::api
