#include <doctest/doctest.h>

#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "manifest.h"

using namespace ferry;
using namespace ferry::demo;

namespace {

const char *kGood = R"({
  "version": 1,
  "migration": "m-20261122-0001",
  "state": "e30=",
  "connections": [
    {"fd": 3, "name": "conn0", "local": "198.51.100.10:7000",
     "remote": "198.51.100.20:41234", "state": "ESTABLISHED"},
    {"fd": 4, "name": "conn1", "local": "[2001:db8::10]:7000",
     "remote": "[2001:db8::20]:41234", "state": "CLOSE_WAIT", "future": true},
    {"fd": 5, "name": "listen0", "local": "198.51.100.10:7000",
     "remote": "", "state": "LISTEN"}
  ]
})";

std::string errorOf(const std::string &json)
{
	auto m = parseManifest(json);
	REQUIRE_FALSE(m.ok());
	CHECK(m.error().code == EINVAL);
	return m.error().message();
}

std::string withConnection(const std::string &connection)
{
	return R"({"version":1,"migration":"m","state":"","connections":[)" + connection + "]}";
}

} // namespace

TEST_CASE("the manifest of docs/workloads.md parses")
{
	auto m = parseManifest(kGood);
	REQUIRE(m.ok());
	CHECK(m->migration == "m-20261122-0001");
	CHECK(m->state == "e30=");
	REQUIRE(m->connections.size() == 3);
	CHECK(m->connections[0].fd == 3);
	CHECK(m->connections[0].name == "conn0");
	CHECK(m->connections[0].local.toString() == "198.51.100.10:7000");
	REQUIRE(m->connections[0].remote);
	CHECK(m->connections[0].remote->toString() == "198.51.100.20:41234");
	CHECK(m->connections[1].local.family == AF_INET6);
	CHECK(m->connections[1].state == "CLOSE_WAIT");
	CHECK(m->connections[2].isListener());
	CHECK_FALSE(m->connections[2].remote);
	CHECK(m->forFd(5) == &m->connections[2]);
	CHECK(m->forFd(6) == nullptr);
}

TEST_CASE("bad manifests give an error that names the field")
{
	CHECK(errorOf("{").find("manifest: document is not valid JSON") != std::string::npos);
	CHECK(errorOf("[1]").find("not a JSON object") != std::string::npos);
	CHECK(errorOf(R"({"version":2,"migration":"m","state":"","connections":[]})").find("manifest: version: is 2") != std::string::npos);
	CHECK(errorOf(R"({"version":"1","migration":"m","state":"","connections":[]})").find("version: not an integer") != std::string::npos);
	CHECK(errorOf(R"({"version":1,"state":"","connections":[]})").find("migration: missing") != std::string::npos);
	CHECK(errorOf(R"({"version":1,"migration":"m","connections":[]})").find("state: missing") != std::string::npos);
	CHECK(errorOf(R"({"version":1,"migration":"m","state":"","connections":{}})").find("connections: not an array") != std::string::npos);
	CHECK(errorOf(withConnection("7")).find("connections[0]: not an object") != std::string::npos);
	CHECK(errorOf(withConnection(R"({"fd":2,"name":"c","local":"198.51.100.1:1","remote":"198.51.100.2:2","state":"ESTABLISHED"})"))
		.find("connections[0].fd: 2 is not an inherited fd") != std::string::npos);
	CHECK(errorOf(withConnection(R"({"fd":3.5,"name":"c","local":"198.51.100.1:1","remote":"198.51.100.2:2","state":"ESTABLISHED"})"))
		.find("connections[0].fd: not an integer") != std::string::npos);
	CHECK(errorOf(withConnection(R"({"fd":3,"local":"198.51.100.1:1","remote":"198.51.100.2:2","state":"ESTABLISHED"})"))
		.find("connections[0].name: missing") != std::string::npos);
	CHECK(errorOf(withConnection(R"({"fd":3,"name":"c","local":"198.51.100.1","remote":"198.51.100.2:2","state":"ESTABLISHED"})"))
		.find("connections[0].local") != std::string::npos);
	CHECK(errorOf(withConnection(R"({"fd":3,"name":"c","local":"198.51.100.1:1","remote":"","state":"ESTABLISHED"})"))
		.find("connections[0].remote: is empty for a connection in state ESTABLISHED") != std::string::npos);
	CHECK(errorOf(withConnection(R"({"fd":3,"name":"l","local":"198.51.100.1:1","remote":"198.51.100.2:2","state":"LISTEN"})"))
		.find("must be empty for a LISTEN socket") != std::string::npos);
	CHECK(errorOf(withConnection(R"({"fd":3,"name":"c","local":"198.51.100.1:1","remote":"198.51.100.2:2","state":""})"))
		.find("connections[0].state: is empty") != std::string::npos);
	CHECK(errorOf(withConnection(
		R"({"fd":3,"name":"a","local":"198.51.100.1:1","remote":"","state":"LISTEN"},)"
		R"({"fd":3,"name":"b","local":"198.51.100.1:2","remote":"","state":"LISTEN"})"))
		.find("connections[1].fd: 3 appears twice") != std::string::npos);
}

TEST_CASE("readManifest names the file")
{
	auto missing = readManifest("/nonexistent/ferry-manifest.json");
	REQUIRE_FALSE(missing.ok());
	CHECK(missing.error().code == ENOENT);
	CHECK(missing.error().message().find("/nonexistent/ferry-manifest.json") != std::string::npos);

	char path[] = "/tmp/ferry-demo-manifest-XXXXXX";
	int fd = ::mkstemp(path);
	REQUIRE(fd >= 0);
	::close(fd);
	{
		std::ofstream(path) << "{\"version\":1}";
	}
	auto bad = readManifest(path);
	::unlink(path);
	REQUIRE_FALSE(bad.ok());
	CHECK(bad.error().message().find("migration: missing") != std::string::npos);
	CHECK(bad.error().message().find(path) != std::string::npos);
}

TEST_CASE("socket activation variables follow the systemd convention")
{
	auto none = socketActivation(nullptr, nullptr, nullptr, 100);
	REQUIRE(none.ok());
	CHECK_FALSE(*none);

	auto otherPid = socketActivation("99", "2", nullptr, 100);
	REQUIRE(otherPid.ok());
	CHECK_FALSE(*otherPid); // meant for another process: ignored

	auto mine = socketActivation("100", "3", "conn0:conn1:listen0", 100);
	REQUIRE(mine.ok());
	REQUIRE(*mine);
	CHECK((*mine)->count == 3);
	CHECK((*mine)->names == std::vector<std::string>{"conn0", "conn1", "listen0"});

	auto noNames = socketActivation("100", "1", nullptr, 100);
	REQUIRE(noNames.ok());
	CHECK((*noNames)->names.empty());

	CHECK_FALSE(socketActivation("abc", "1", nullptr, 100).ok());
	CHECK_FALSE(socketActivation("100", "-1", nullptr, 100).ok());
	auto wrongCount = socketActivation("100", "2", "a:b:c", 100);
	REQUIRE_FALSE(wrongCount.ok());
	CHECK(wrongCount.error().message().find("3 names but LISTEN_FDS is 2") != std::string::npos);
}

TEST_CASE("the manifest must describe exactly the inherited fds")
{
	auto m = parseManifest(kGood);
	REQUIRE(m.ok());
	CHECK(checkManifest(*m, SocketActivation{3, {"conn0", "conn1", "listen0"}}).ok());
	CHECK(checkManifest(*m, SocketActivation{3, {}}).ok());

	auto fewer = checkManifest(*m, SocketActivation{2, {}});
	REQUIRE_FALSE(fewer.ok());
	CHECK(fewer.error().message().find("describes 3 fds but LISTEN_FDS is 2") != std::string::npos);

	auto renamed = checkManifest(*m, SocketActivation{3, {"conn0", "connX", "listen0"}});
	REQUIRE_FALSE(renamed.ok());
	CHECK(renamed.error().message().find("LISTEN_FDNAMES says 'connX'") != std::string::npos);

	auto gap = parseManifest(withConnection(
		R"({"fd":3,"name":"a","local":"198.51.100.1:1","remote":"","state":"LISTEN"},)"
		R"({"fd":5,"name":"b","local":"198.51.100.1:2","remote":"","state":"LISTEN"})"));
	REQUIRE(gap.ok());
	auto outside = checkManifest(*gap, SocketActivation{2, {}});
	REQUIRE_FALSE(outside.ok());
	CHECK(outside.error().message().find("fd 5, outside the 2 inherited fds") != std::string::npos);
}
