// The handoff protocol's messages (docs/workloads.md): strict parsing of
// what a workload sends, exact encoding of what the agent sends.
#include <doctest/doctest.h>

#include <cerrno>
#include <optional>
#include <string>

#include "migration/workload_handoff.h"

using namespace ferry;
using namespace ferry::migration;

namespace {

Error refused(std::string_view packet, std::optional<WorkloadMessageKind> *kind = nullptr)
{
	auto message = parseWorkloadMessage(packet, kind);
	REQUIRE_FALSE(message.ok());
	CHECK(message.error().code == EPROTO);
	return message.error();
}

} // namespace

TEST_CASE("hello: pid and name, name optional")
{
	std::optional<WorkloadMessageKind> kind;
	auto message = parseWorkloadMessage(R"({"hello":{"pid":1234,"name":"demo"}})", &kind);
	REQUIRE(message.ok());
	CHECK(kind == WorkloadMessageKind::Hello);
	CHECK(message->kind == WorkloadMessageKind::Hello);
	CHECK(message->hello.pid == 1234);
	CHECK(message->hello.name == "demo");

	message = parseWorkloadMessage(R"({"hello":{"name":"x","pid":1}})");
	REQUIRE(message.ok());
	CHECK(message->hello.pid == 1);

	message = parseWorkloadMessage(" {\"hello\" : {\"pid\" : 7}}\n");
	REQUIRE(message.ok());
	CHECK(message->hello.pid == 7);
	CHECK(message->hello.name.empty());
}

TEST_CASE("hello: everything else is refused and says what is wrong")
{
	const std::pair<const char *, const char *> cases[] = {
		{R"({"hello":{}})", "no field 'pid'"},
		{R"({"hello":{"pid":0}})", "positive integer"},
		{R"({"hello":{"pid":-5}})", "positive integer"},
		{R"({"hello":{"pid":1.5}})", "positive integer"},
		{R"({"hello":{"pid":"12"}})", "positive integer"},
		{R"({"hello":{"pid":4294967297}})", "positive integer"},
		{R"({"hello":{"pid":1,"pid":2}})", "appears twice"},
		{R"({"hello":{"pid":1,"name":3}})", "not a string"},
		{R"({"hello":{"pid":1,"name":"a\nb"}})", "printable ASCII"},
		{R"({"hello":{"pid":1,"name":"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}})", "printable ASCII"},
		{R"({"hello":{"pid":1,"uid":0}})", "unknown field 'uid'"},
		{R"({"hello":[1234]})", "not a JSON object"},
		{R"({"hello":null})", "not a JSON object"},
	};
	for (const auto &c : cases) {
		const auto &packet = c.first; // not a structured binding: clang 14 cannot CAPTURE one
		const char *problem = c.second;
		CAPTURE(packet);
		std::optional<WorkloadMessageKind> kind;
		Error error = refused(packet, &kind);
		CHECK(error.what.find(problem) != std::string::npos);
		// The envelope named hello, so the server knows what failed.
		CHECK(kind == WorkloadMessageKind::Hello);
	}
}

TEST_CASE("ready: the state is decoded, empty allowed")
{
	auto message = parseWorkloadMessage(R"({"ready":{"state":"AGZvbwD/"}})");
	REQUIRE(message.ok());
	CHECK(message->kind == WorkloadMessageKind::Ready);
	CHECK(message->ready.state == std::string("\0foo\0\xff", 6));

	message = parseWorkloadMessage(R"({"ready":{"state":""}})");
	REQUIRE(message.ok());
	CHECK(message->ready.state.empty());
}

TEST_CASE("ready: a bad body is refused, and the kind still reported")
{
	const std::pair<const char *, const char *> cases[] = {
		{R"({"ready":{}})", "no field 'state'"},
		{R"({"ready":{"state":null}})", "not a string"},
		{R"({"ready":{"state":"Zg="}})", "not base64"},
		{R"({"ready":{"state":"Zg==","extra":1}})", "unknown field"},
		{R"({"ready":{"state":"","state":""}})", "appears twice"},
		{R"({"ready":"Zg=="})", "not a JSON object"},
	};
	for (const auto &c : cases) {
		const auto &packet = c.first; // not a structured binding: clang 14 cannot CAPTURE one
		const char *problem = c.second;
		CAPTURE(packet);
		std::optional<WorkloadMessageKind> kind;
		Error error = refused(packet, &kind);
		CHECK(error.what.find(problem) != std::string::npos);
		CHECK(kind == WorkloadMessageKind::Ready);
	}
}

TEST_CASE("envelopes that are not one known workload message are refused")
{
	const std::pair<std::string, const char *> cases[] = {
		{"", "not valid JSON"},
		{"hello", "not valid JSON"},
		{R"({"hello":{"pid":1}} trailing)", "not valid JSON"},
		{R"({"hello":{"pid":1}})" + std::string(1, '\0') + "x", "NUL byte"},
		{"[]", "not a JSON object"},
		{"42", "not a JSON object"},
		{"{}", "not exactly one"},
		{R"({"hello":{"pid":1},"ready":{"state":""}})", "not exactly one"},
		{R"({"hello":{"pid":1},"hello":{"pid":1}})", "not exactly one"},
		{R"({"prepare":{"migration":"m"}})", "sent by the agent"},
		{R"({"exit":{}})", "sent by the agent"},
		{R"({"bye":{}})", "unknown message 'bye'"},
		{"{\"\xff\":{}}", "not valid JSON"},   // not UTF-8
		{std::string(100000, '[') , "not valid JSON"}, // deep nesting: no stack overflow
	};
	for (const auto &c : cases) {
		const std::string &packet = c.first;
		const char *problem = c.second;
		CAPTURE(packet.substr(0, 40));
		std::optional<WorkloadMessageKind> kind = WorkloadMessageKind::Ready;
		Error error = refused(packet, &kind);
		CHECK(error.what.find(problem) != std::string::npos);
		CHECK_FALSE(kind.has_value());
	}
}

TEST_CASE("the agent's messages are exact")
{
	CHECK(encodePrepare("m-20261122-0001") == R"({"prepare":{"migration":"m-20261122-0001"}})");
	CHECK(encodeResume() == R"({"resume":{}})");
	CHECK(encodeExit() == R"({"exit":{}})");
}

TEST_CASE("migration ids are short and safe for file names and logs")
{
	CHECK(checkMigrationId("m-20261122-0001").ok());
	CHECK(checkMigrationId("A.b_c-9").ok());
	CHECK(checkMigrationId(std::string(kMaxMigrationIdBytes, 'a')).ok());
	for (std::string bad : {std::string(), std::string(kMaxMigrationIdBytes + 1, 'a'), std::string("../etc"),
				std::string("m 1"), std::string("m\"1"), std::string("m/1")}) {
		CAPTURE(bad);
		auto status = checkMigrationId(bad);
		REQUIRE_FALSE(status.ok());
		CHECK(status.error().code == EINVAL);
	}
}
