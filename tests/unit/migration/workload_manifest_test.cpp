// FERRY_MANIFEST (docs/workloads.md): the exact document a workload reads.
#include <doctest/doctest.h>

#include <string>

#include "migration/workload_launcher.h"

using namespace ferry;
using namespace ferry::migration;

namespace {

Endpoint endpoint(const char *text)
{
	auto e = Endpoint::parse(text);
	REQUIRE(e.ok());
	return *e;
}

} // namespace

TEST_CASE("the manifest has exactly the documented fields, in order")
{
	std::vector<HandedSocket> sockets = {
		{10, "conn0", endpoint("198.51.100.10:7000"), endpoint("198.51.100.20:41234"), "ESTABLISHED"},
		{11, "conn1", endpoint("[2001:db8::10]:7000"), endpoint("[2001:db8::20]:50000"), "CLOSE_WAIT"},
		{12, "listen0", endpoint("198.51.100.10:7000"), Endpoint{}, "LISTEN"},
	};
	std::string json = encodeManifest("m-20261122-0001", std::string("\0st\xff", 4), sockets);
	CHECK(json == "{\"version\":1,\"migration\":\"m-20261122-0001\",\"state\":\"AHN0/w==\",\"connections\":["
		      "{\"fd\":3,\"name\":\"conn0\",\"local\":\"198.51.100.10:7000\",\"remote\":\"198.51.100.20:41234\","
		      "\"state\":\"ESTABLISHED\"},"
		      "{\"fd\":4,\"name\":\"conn1\",\"local\":\"[2001:db8::10]:7000\",\"remote\":\"[2001:db8::20]:50000\","
		      "\"state\":\"CLOSE_WAIT\"},"
		      "{\"fd\":5,\"name\":\"listen0\",\"local\":\"198.51.100.10:7000\",\"remote\":\"\","
		      "\"state\":\"LISTEN\"}]}");
}

TEST_CASE("an empty handover has an empty state and no connections")
{
	CHECK(encodeManifest("m-1", "", {}) ==
	      R"({"version":1,"migration":"m-1","state":"","connections":[]})");
}
