#include <doctest/doctest.h>

#include "api/routes.h"

using namespace ferry;
using namespace ferry::api;

TEST_CASE("every route of v1 matches its method and path")
{
	struct Case {
		const char *method;
		const char *path;
		RouteId route;
		const char *id;
	};
	const Case cases[] = {
		{"GET", "/v1/info", RouteId::Info, ""},
		{"GET", "/metrics", RouteId::Metrics, ""},
		{"POST", "/v1/migrations", RouteId::StartMigration, ""},
		{"GET", "/v1/migrations", RouteId::ListMigrations, ""},
		{"GET", "/v1/migrations/m-1", RouteId::MigrationStatus, "m-1"},
		{"POST", "/v1/migrations/m-1/abort", RouteId::AbortMigration, "m-1"},
		{"GET", "/v1/migrations/m_2.x/events", RouteId::MigrationEvents, "m_2.x"},
		{"POST", "/v1/incoming", RouteId::PrepareIncoming, ""},
		{"PUT", "/v1/incoming/m-3/image", RouteId::ReceiveImage, "m-3"},
		{"POST", "/v1/incoming/m-3/commit", RouteId::CommitIncoming, "m-3"},
	};
	for (const Case &c : cases) {
		RouteMatch m = matchRoute(c.method, c.path);
		CHECK_MESSAGE(m.status == 0, c.path);
		CHECK((m.route == c.route));
		CHECK(m.id == c.id);
	}
}

TEST_CASE("unknown paths are 404, other methods 405 with Allow, bad ids 400")
{
	for (const char *path : {"/", "", "/v1", "/v1/info/", "/v2/info", "/v1/migrations/", "/v1/migrations//abort",
				 "/v1/incoming/m-1", "/v1/incoming/m-1/image/x", "metrics", "//metrics"})
		CHECK_MESSAGE(matchRoute("GET", path).status == 404, path);
	RouteMatch m = matchRoute("DELETE", "/v1/migrations");
	CHECK(m.status == 405);
	CHECK(m.allow == "POST, GET");
	m = matchRoute("POST", "/v1/incoming/m-1/image");
	CHECK(m.status == 405);
	CHECK(m.allow == "PUT");
	m = matchRoute("HEAD", "/v1/info");
	CHECK(m.status == 405);
	CHECK(m.allow == "GET");
	m = matchRoute("GET", "/v1/migrations/a%2Fb");
	CHECK(m.status == 400);
	CHECK(m.why.find("migration id") == 0);
	CHECK(matchRoute("GET", "/v1/migrations/..").status == 400);
	CHECK(matchRoute("GET", ("/v1/migrations/" + std::string(129, 'a')).c_str()).status == 400);
}

TEST_CASE("errno maps to HTTP status as the contract says")
{
	auto status = [](int code) { return httpStatusFor(makeError("x", code)); };
	CHECK(status(EINVAL) == 400);
	CHECK(status(EACCES) == 403);
	CHECK(status(EPERM) == 403);
	CHECK(status(ENOENT) == 404);
	CHECK(status(EEXIST) == 409);
	CHECK(status(EBUSY) == 409);
	CHECK(status(EALREADY) == 409);
	CHECK(status(E2BIG) == 413);
	CHECK(status(EFBIG) == 413);
	CHECK(status(ETIMEDOUT) == 504);
	CHECK(status(EAGAIN) == 503);
	CHECK(status(0) == 500);
	CHECK(status(EIO) == 500);
	CHECK(takesJsonBody(RouteId::PrepareIncoming));
	CHECK_FALSE(takesJsonBody(RouteId::ReceiveImage));
}
