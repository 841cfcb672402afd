#include <doctest/doctest.h>

#include <string>

#include "handoff_state.h"

using namespace ferry;
using namespace ferry::demo;

namespace {

Endpoint ep(const char *text)
{
	auto e = Endpoint::parse(text);
	REQUIRE(e.ok());
	return *e;
}

std::string b64(const std::string &text)
{
	return encodeBase64(std::span(reinterpret_cast<const uint8_t *>(text.data()), text.size()));
}

} // namespace

TEST_CASE("base64 follows RFC 4648")
{
	CHECK(b64("") == "");
	CHECK(b64("f") == "Zg==");
	CHECK(b64("fo") == "Zm8=");
	CHECK(b64("foo") == "Zm9v");
	CHECK(b64("foobar") == "Zm9vYmFy");
	std::vector<uint8_t> all(256);
	for (size_t i = 0; i < all.size(); i++)
		all[i] = static_cast<uint8_t>(i);
	auto back = decodeBase64(encodeBase64(all));
	REQUIRE(back.ok());
	CHECK(*back == all);

	CHECK_FALSE(decodeBase64("Zg=").ok());    // length
	CHECK_FALSE(decodeBase64("Z!==").ok());   // alphabet
	CHECK_FALSE(decodeBase64("Z===").ok());   // too much padding
	CHECK_FALSE(decodeBase64("Zg==Zm9v").ok()); // padding in the middle
	CHECK_FALSE(decodeBase64("Zm=v").ok());   // a character after padding
}

TEST_CASE("the state blob round-trips, IPv4 and IPv6")
{
	HandoffState state;
	state.listeners = {ep("198.51.100.10:7000"), ep("[2001:db8::10]:7000")};
	state.connections.push_back({FlowId{ep("198.51.100.10:7000"), ep("198.51.100.20:41234")}, 123, false, 4096, 8192});
	state.connections.push_back({FlowId{ep("[2001:db8::10]:7000"), ep("[2001:db8::20]:50000")},
		UINT64_MAX, true, 0, 0});
	// A connection whose hello had not arrived: no seed, no offsets.
	state.connections.push_back({FlowId{ep("198.51.100.10:7000"), ep("198.51.100.21:1")}, std::nullopt, false, 0, 0});
	state.connections[0].sent = (1ull << 40) + 3; // beyond 32 bits

	auto back = decodeHandoffState(encodeHandoffState(state));
	REQUIRE(back.ok());
	CHECK(*back == state);
	const ConnectionState *found = back->find(FlowId{ep("[2001:db8::10]:7000"), ep("[2001:db8::20]:50000")});
	REQUIRE(found);
	CHECK(found->idle);
	CHECK(back->find(FlowId{ep("198.51.100.10:7000"), ep("198.51.100.20:41235")}) == nullptr);
}

TEST_CASE("an empty blob is an empty state")
{
	auto s = decodeHandoffState("");
	REQUIRE(s.ok());
	CHECK(s->connections.empty());
	CHECK(s->listeners.empty());
}

TEST_CASE("bad blobs fail with the field that is wrong")
{
	auto expectError = [](const std::string &json, const std::string &mention) {
		auto s = decodeHandoffState(b64(json));
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().code == EINVAL);
		INFO(s.error().message());
		CHECK(s.error().message().find(mention) != std::string::npos);
	};
	expectError("not json", "not valid JSON");
	expectError("[]", "not a JSON object");
	expectError(R"({"version":2,"listeners":[],"connections":[]})", "version");
	expectError(R"({"version":1,"connections":[]})", "listeners: missing");
	expectError(R"({"version":1,"listeners":["nope"],"connections":[]})", "listeners[0]");
	expectError(R"({"version":1,"listeners":[],"connections":[{"local":"198.51.100.1:1","remote":"198.51.100.2:2","seed":1,"sent":-1,"received":0}]})",
		"connections[0].sent");
	expectError(R"({"version":1,"listeners":[],"connections":[{"local":"198.51.100.1:1","seed":1,"sent":1,"received":0}]})",
		"connections[0].remote: missing");
	expectError(R"({"version":1,"listeners":[],"connections":[{"local":"198.51.100.1:1","remote":"198.51.100.2:2","sent":5,"received":0}]})",
		"no seed");
	expectError(R"({"version":1,"listeners":[],"connections":[)"
		R"({"local":"198.51.100.1:1","remote":"198.51.100.2:2","seed":1,"sent":1,"received":0},)"
		R"({"local":"198.51.100.1:1","remote":"198.51.100.2:2","seed":2,"sent":1,"received":0}]})",
		"repeats connection");
	auto notBase64 = decodeHandoffState("***");
	REQUIRE_FALSE(notBase64.ok());
	CHECK(notBase64.error().message().find("field=state") != std::string::npos);
}

TEST_CASE("flow keys treat an IPv4-mapped endpoint as its IPv4 form")
{
	FlowId v4{ep("198.51.100.10:7000"), ep("198.51.100.20:41234")};
	FlowId mapped{ep("[::ffff:198.51.100.10]:7000"), ep("[::ffff:198.51.100.20]:41234")};
	FlowId otherPort{ep("198.51.100.10:7000"), ep("198.51.100.20:41235")};
	FlowId v6{ep("[2001:db8::10]:7000"), ep("[2001:db8::20]:41234")};
	CHECK(flowKey(v4) == flowKey(mapped));
	CHECK(flowKey(v4) != flowKey(otherPort));
	CHECK(flowKey(v4) != flowKey(v6));
	CHECK(canonicalEndpoint(ep("[::ffff:198.51.100.10]:7000")) == ep("198.51.100.10:7000"));
	CHECK(canonicalEndpoint(ep("[2001:db8::10]:7000")) == ep("[2001:db8::10]:7000"));
}
