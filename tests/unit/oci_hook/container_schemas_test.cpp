// The wire format of the container routes: strict decoding of POST
// /v1/containers, entries and lists round-tripping, and the routes' path
// matching for container ids.
#include <doctest/doctest.h>

#include "api/container_schemas.h"
#include "api/routes.h"

using namespace ferry;
using namespace ferry::api;

namespace {

std::string errorOf(std::string_view json)
{
	auto r = parseContainerRegistration(json);
	REQUIRE_FALSE(r.ok());
	CHECK(r.error().code == EINVAL);
	return r.error().what;
}

} // namespace

TEST_CASE("container ids: letters, digits, . _ + -, starting with a letter or digit")
{
	CHECK(isValidContainerId("web-1"));
	CHECK(isValidContainerId("98b823f8a51226a72300d424e4658fae4997ebeb85654d7a9f4e2d2d627bf2e4"));
	CHECK(isValidContainerId("a.b_c+d-e"));
	CHECK(isValidContainerId(std::string(kMaxContainerIdLength, 'a')));
	CHECK_FALSE(isValidContainerId(std::string(kMaxContainerIdLength + 1, 'a')));
	CHECK_FALSE(isValidContainerId(""));
	CHECK_FALSE(isValidContainerId("-rf"));
	CHECK_FALSE(isValidContainerId(".."));
	CHECK_FALSE(isValidContainerId("a/b"));
	CHECK_FALSE(isValidContainerId("a b"));
	CHECK_FALSE(isValidContainerId("a%2f"));
	CHECK_FALSE(isValidContainerId("é"));
}

TEST_CASE("a minimal registration gets its defaults")
{
	auto r = parseContainerRegistration(R"({"id":"web-1","runtime":"runc","pid":4242})");
	REQUIRE_MESSAGE(r.ok(), r.error().message());
	CHECK(r->id == "web-1");
	CHECK((r->runtime == container::Runtime::Runc));
	CHECK(r->pid == 4242);
	CHECK(r->name == "web-1");
	CHECK(r->netns == "pid:4242");
	CHECK(r->status == "running");
	CHECK(r->bundle.empty());
	CHECK(r->cgroup.empty());
	CHECK(r->annotations.empty());
}

TEST_CASE("a full registration round-trips through what the hook sends")
{
	container::ContainerInfo info;
	info.runtime = container::Runtime::Podman;
	info.id = "98b823f8a512";
	info.name = "web";
	info.pid = 77;
	info.bundle = "/var/lib/containers/storage/overlay-containers/98b823f8a512/userdata";
	info.netns = "/proc/77/ns/net";
	info.cgroup = "/sys/fs/cgroup/freezer/machine.slice/libpod-98b823f8a512";
	info.annotations = {{"io.ferry.migratable", "true"}, {"quote\"key", "line\nbreak"}};
	auto back = parseContainerRegistration(containerRegistrationJson(info));
	REQUIRE_MESSAGE(back.ok(), back.error().message());
	CHECK((back->runtime == info.runtime));
	CHECK(back->id == info.id);
	CHECK(back->name == info.name);
	CHECK(back->pid == info.pid);
	CHECK(back->bundle == info.bundle);
	CHECK(back->netns == info.netns);
	CHECK(back->cgroup == info.cgroup);
	CHECK(back->annotations == info.annotations);

	// An entry (with status) and a list decode back as well.
	back->status = "running";
	auto entry = parseContainerEntry(containerJson(*back));
	REQUIRE_MESSAGE(entry.ok(), entry.error().message());
	CHECK(entry->status == "running");
	CHECK(entry->annotations == info.annotations);
	auto list = parseContainerList(containerListJson({*back, *back}));
	REQUIRE_MESSAGE(list.ok(), list.error().message());
	CHECK(list->size() == 2);
	CHECK(parseContainerList(containerListJson({}))->empty());
	// An entry must carry every field.
	CHECK(parseContainerEntry(R"({"id":"a","runtime":"runc","pid":1})").error().what == "name: missing");
	CHECK(parseContainerList(R"({"containers":[{"id":"a"}]})").error().what.find("containers[0]") == 0);
}

TEST_CASE("registrations are validated strictly; the error names the field")
{
	CHECK(errorOf("") .find("body: not valid JSON") == 0);
	CHECK(errorOf("[]") == "body: expected object");
	CHECK(errorOf(R"({"runtime":"runc","pid":1})") == "id: missing");
	CHECK(errorOf(R"({"id":"a","pid":1})") == "runtime: missing");
	CHECK(errorOf(R"({"id":"a","runtime":"runc"})") == "pid: missing");
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"extra":1})") == "extra: unknown field");
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"status":"running"})") == "status: unknown field");
	CHECK(errorOf(R"({"id":"a","id":"b","runtime":"runc","pid":1})") == "id: duplicate field");
	CHECK(errorOf(R"({"id":"-a","runtime":"runc","pid":1})").find("id: expected") == 0);
	CHECK(errorOf(R"({"id":"a/b","runtime":"runc","pid":1})").find("id: expected") == 0);
	CHECK(errorOf(R"({"id":"","runtime":"runc","pid":1})").find("id: expected") == 0);
	CHECK(errorOf(R"({"id":7,"runtime":"runc","pid":1})") == "id: expected string");
	CHECK(errorOf(R"({"id":"a","runtime":"docker","pid":1})").find("runtime: expected") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":0})").find("pid: expected an integer") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":-1})").find("pid: expected an integer") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":2147483648})").find("pid: expected an integer") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1.5})").find("pid: expected an integer") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":"1"})").find("pid: expected an integer") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"bundle":"rel/path"})").find("bundle: expected an absolute") ==
	      0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"cgroup":"x"})").find("cgroup: expected an absolute") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"netns":"self"})").find("netns: expected") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"netns":"pid:"})").find("netns: expected") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"netns":"pid:1x"})").find("netns: expected") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"name":"-x"})").find("name: expected") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"annotations":[]})").find("annotations: expected") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"annotations":{"k":1}})") ==
	      "annotations.k: expected string");
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"annotations":{"":"v"}})").find("annotations:") == 0);
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"annotations":{"k":"v","k":"w"}})") ==
	      "annotations.k: duplicate annotation");
	CHECK(errorOf(R"({"id":"a","runtime":"runc","pid":1,"bundle":"/a\u0000b"})").find("bundle: string contains") == 0);

	std::string many = R"({"id":"a","runtime":"runc","pid":1,"annotations":{)";
	for (size_t i = 0; i <= kMaxAnnotations; ++i)
		many += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":\"v\"";
	many += "}}";
	CHECK(errorOf(many).find("annotations: more than") == 0);
	std::string longValue = R"({"id":"a","runtime":"runc","pid":1,"annotations":{"k":")" +
				std::string(kMaxAnnotationValue + 1, 'v') + "\"}}";
	CHECK(errorOf(longValue).find("annotations.k: longer than") == 0);
	// Each value within bounds, their sum not.
	std::string heavy = R"({"id":"a","runtime":"runc","pid":1,"annotations":{)";
	for (size_t i = 0; i * kMaxAnnotationValue <= kMaxAnnotationBytes; ++i)
		heavy += (i ? "," : "") + std::string("\"k") + std::to_string(i) + "\":\"" +
			 std::string(kMaxAnnotationValue, 'v') + "\"";
	heavy += "}}";
	CHECK(errorOf(heavy).find("annotations: more than " + std::to_string(kMaxAnnotationBytes) + " bytes") == 0);

	// Accepted forms of netns.
	CHECK(parseContainerRegistration(R"({"id":"a","runtime":"runc","pid":1,"netns":"pid:99"})")->netns == "pid:99");
	CHECK(parseContainerRegistration(R"({"id":"a","runtime":"runc","pid":1,"netns":"/run/netns/x"})")->netns ==
	      "/run/netns/x");
}

TEST_CASE("the container routes")
{
	auto route = [](const char *method, const char *path) { return matchRoute(method, path); };
	CHECK(route("POST", "/v1/containers").route == RouteId::RegisterContainer);
	CHECK(route("POST", "/v1/containers").status == 0);
	CHECK(route("GET", "/v1/containers").route == RouteId::ListContainers);
	CHECK(route("GET", "/v1/containers/web-1").route == RouteId::ContainerStatus);
	CHECK(route("GET", "/v1/containers/web-1").id == "web-1");
	CHECK(route("DELETE", "/v1/containers/web+1").route == RouteId::DeregisterContainer);
	CHECK(route("DELETE", "/v1/containers/web+1").status == 0);
	CHECK(takesJsonBody(RouteId::RegisterContainer));
	CHECK_FALSE(takesJsonBody(RouteId::DeregisterContainer));

	auto wrong = route("PUT", "/v1/containers/web-1");
	CHECK(wrong.status == 405);
	CHECK(wrong.allow == "GET, DELETE");
	CHECK(route("DELETE", "/v1/containers").status == 405);
	CHECK(route("DELETE", "/v1/containers").allow == "POST, GET");
	auto bad = route("GET", "/v1/containers/-rf");
	CHECK(bad.status == 400);
	CHECK(bad.why.find("container id") != std::string::npos);
	CHECK(route("GET", "/v1/containers/a%2fb").status == 400);
	CHECK(route("GET", "/v1/containers/a/b").status == 404);
	// "+" is a container id character, not a migration id one.
	CHECK(route("GET", "/v1/migrations/a+b").status == 400);
}
