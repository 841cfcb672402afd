// The container routes on the real ApiServer over loopback (port 0), with
// a real ContainerRegistry in a temporary state directory and child
// processes as containers. The migration side is the API tests' fake.
#include <doctest/doctest.h>

#include <httplib.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "../api/fake_migration_service.h"
#include "api/api_server.h"
#include "api/container_schemas.h"
#include "api/schemas.h"
#include "child_process.h"

using namespace ferry;
using namespace ferry::api;
namespace fs = std::filesystem;

namespace {

constexpr const char *kToken = "hook-test-token";

struct TempDir {
	fs::path path;
	TempDir()
	{
		char name[] = "/tmp/ferry-container-routes-XXXXXX";
		REQUIRE(::mkdtemp(name) != nullptr);
		path = name;
	}
	~TempDir()
	{
		std::error_code ec;
		fs::remove_all(path, ec);
	}
};

struct Agent {
	TempDir dir;
	test::FakeMigrationService fake;
	std::unique_ptr<container::ContainerRegistry> registry;
	std::unique_ptr<ApiServer> server;

	explicit Agent(bool withRegistry = true)
	{
		AgentConfig c;
		c.listen = *Endpoint::parse("127.0.0.1:0");
		c.stateDir = (dir.path / "state").string();
		std::ofstream(dir.path / "token") << kToken << "\n";
		c.tokenFile = (dir.path / "token").string();
		c.limits.maxRequestBodyBytes = 64 * 1024;
		if (withRegistry) {
			auto opened = container::ContainerRegistry::open((dir.path / "containers.json").string());
			REQUIRE(opened.ok());
			registry = std::move(*opened);
		}
		auto created = ApiServer::create(fake, c, registry.get());
		REQUIRE_MESSAGE(created.ok(), created.error().message());
		server = std::move(*created);
		REQUIRE(server->start().ok());
	}

	httplib::Client client() const
	{
		httplib::Client cli("127.0.0.1", server->port());
		cli.set_default_headers({{"Authorization", std::string("Bearer ") + kToken}});
		return cli;
	}
};

std::string registration(const std::string &id, pid_t pid, const std::string &extra = "")
{
	return R"({"id":")" + id + R"(","runtime":"runc","pid":)" + std::to_string(pid) +
	       R"(,"bundle":"/srv/)" + id + R"(","annotations":{"io.ferry.migratable":"true"})" + extra + "}";
}

std::string errorText(const httplib::Result &res)
{
	REQUIRE(res);
	auto e = fromJson<ErrorReply>(res->body);
	REQUIRE_MESSAGE(e.ok(), res->body);
	return e->error.what;
}

} // namespace

TEST_CASE("register, list, look up, replace and deregister over HTTP")
{
	Agent agent;
	auto cli = agent.client();
	test::ChildProcess first, second;

	auto created = cli.Post("/v1/containers", registration("web-1", first.pid(), R"(,"name":"web")"), "application/json");
	REQUIRE(created);
	CHECK(created->status == 201);
	CHECK(created->get_header_value("Location") == "/v1/containers/web-1");
	auto entry = parseContainerEntry(created->body);
	REQUIRE_MESSAGE(entry.ok(), created->body);
	CHECK(entry->id == "web-1");
	CHECK(entry->name == "web");
	CHECK(entry->pid == first.pid());
	CHECK(entry->netns == "pid:" + std::to_string(first.pid()));
	CHECK(entry->status == "running");

	auto listed = cli.Get("/v1/containers");
	REQUIRE(listed);
	CHECK(listed->status == 200);
	auto list = parseContainerList(listed->body);
	REQUIRE_MESSAGE(list.ok(), listed->body);
	REQUIRE(list->size() == 1);
	CHECK((*list)[0].bundle == "/srv/web-1");
	CHECK((*list)[0].annotations.at("io.ferry.migratable") == "true");

	for (const char *key : {"web-1", "web", "web-"}) {
		auto got = cli.Get(std::string("/v1/containers/") + key);
		REQUIRE(got);
		CHECK_MESSAGE(got->status == 200, key);
		CHECK(parseContainerEntry(got->body)->id == "web-1");
	}
	CHECK(cli.Get("/v1/containers/nothing")->status == 404);

	// POST again replaces: one entry, the new pid.
	auto replaced = cli.Post("/v1/containers", registration("web-1", second.pid()), "application/json");
	REQUIRE(replaced);
	CHECK(replaced->status == 201);
	REQUIRE(agent.registry->list().size() == 1);
	CHECK(agent.registry->list()[0].pid == second.pid());

	// DELETE takes the exact id only, never a prefix.
	CHECK(cli.Delete("/v1/containers/web-")->status == 404);
	auto removed = cli.Delete("/v1/containers/web-1");
	REQUIRE(removed);
	CHECK(removed->status == 204);
	CHECK(removed->body.empty());
	CHECK(cli.Delete("/v1/containers/web-1")->status == 404);
	CHECK(parseContainerList(cli.Get("/v1/containers")->body)->empty());
}

TEST_CASE("a dead container disappears from the list")
{
	Agent agent;
	auto cli = agent.client();
	test::ChildProcess child;
	REQUIRE(cli.Post("/v1/containers", registration("c1", child.pid()), "application/json")->status == 201);
	child.killAndReap();
	CHECK(parseContainerList(cli.Get("/v1/containers")->body)->empty());
	CHECK(cli.Get("/v1/containers/c1")->status == 404);
}

TEST_CASE("bad registrations get 400 naming the field, and register nothing")
{
	Agent agent;
	auto cli = agent.client();
	test::ChildProcess child;
	pid_t pid = child.pid();

	auto post = [&](const std::string &body) { return cli.Post("/v1/containers", body, "application/json"); };
	auto res = post(R"({"id":"a","runtime":"runc"})");
	CHECK(res->status == 400);
	CHECK(errorText(res) == "pid: missing");
	res = post(R"({"id":"../x","runtime":"runc","pid":)" + std::to_string(pid) + "}");
	CHECK(res->status == 400);
	CHECK(errorText(res).find("id: expected") == 0);
	res = post(R"({"id":"a","runtime":"lxc","pid":)" + std::to_string(pid) + "}");
	CHECK(res->status == 400);
	CHECK(errorText(res).find("runtime") == 0);
	res = post(registration("a", pid, R"(,"surprise":true)"));
	CHECK(res->status == 400);
	CHECK(errorText(res) == "surprise: unknown field");
	res = post("{");
	CHECK(res->status == 400);

	// A pid that is not running: 400 from the registry's check.
	test::ChildProcess gone;
	pid_t dead = gone.pid();
	gone.killAndReap();
	res = post(registration("a", dead));
	CHECK(res->status == 400);
	CHECK(errorText(res).find("pid: process " + std::to_string(dead) + " is not running") == 0);

	res = cli.Post("/v1/containers", registration("a", pid), "text/plain");
	CHECK(res->status == 415);
	CHECK(cli.Get("/v1/containers/-x")->status == 400);
	CHECK(agent.registry->list().empty());
}

TEST_CASE("the container routes take the same credentials as every route")
{
	Agent agent;
	test::ChildProcess child;
	httplib::Client anonymous("127.0.0.1", agent.server->port());
	auto res = anonymous.Post("/v1/containers", registration("a", child.pid()), "application/json");
	REQUIRE(res);
	CHECK(res->status == 401);
	CHECK(anonymous.Get("/v1/containers")->status == 401);
	CHECK(anonymous.Delete("/v1/containers/a")->status == 401);
	httplib::Client wrong("127.0.0.1", agent.server->port());
	wrong.set_default_headers({{"Authorization", "Bearer not-the-token"}});
	CHECK(wrong.Get("/v1/containers/a")->status == 401);
	CHECK(agent.registry->list().empty());
}

TEST_CASE("an agent without a registry answers 501")
{
	Agent agent(false);
	auto cli = agent.client();
	auto res = cli.Get("/v1/containers");
	REQUIRE(res);
	CHECK(res->status == 501);
	CHECK(errorText(res).find("no container registry") != std::string::npos);
	CHECK(cli.Post("/v1/containers", "{}", "application/json")->status == 501);
	// Migration routes are unaffected.
	CHECK(cli.Get("/v1/info")->status == 200);
}
