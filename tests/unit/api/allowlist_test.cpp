#include <doctest/doctest.h>

#include "api/allowlist.h"

using namespace ferry;
using namespace ferry::api;

namespace {

Cidr range(const char *text)
{
	auto c = Cidr::parse(text);
	REQUIRE_MESSAGE(c.ok(), text);
	return *c;
}

migration::ConnectionSummary connection(const char *local, const char *state = "ESTABLISHED")
{
	migration::ConnectionSummary c;
	c.flow.local = *Endpoint::parse(local);
	c.state = state;
	return c;
}

Allowlist sampleAllow()
{
	Allowlist allow;
	allow.netns = {"ferry-*", "/run/netns/ct-*"};
	allow.interfaces = {"eth0", "veth-*"};
	allow.addresses = {range("198.51.100.0/25"), range("2001:db8:1::/48")};
	return allow;
}

migration::PrepareRequest sampleRequest()
{
	migration::PrepareRequest r;
	r.migrationId = "m-1";
	r.targetNetns = "ferry-b";
	r.addresses = {{"198.51.100.10/24", "eth0", "eth0"}, {"2001:db8:1::10/64", "eth0", "veth-b"}};
	r.connections = {connection("198.51.100.10:7000"), connection("[2001:db8:1::10]:7000"),
			 connection("0.0.0.0:7000", "LISTEN"), connection("[::]:7000", "LISTEN")};
	return r;
}

std::string refusal(const Allowlist &allow, const migration::PrepareRequest &r)
{
	Status s = checkAllowed(allow, r);
	if (s.ok())
		return "";
	CHECK(s.error().code == EACCES);
	return s.error().what;
}

} // namespace

TEST_CASE("CIDR parsing is strict about ranges and lenient about interface addresses")
{
	CHECK(range("198.51.100.0/24").prefixLength == 24);
	CHECK(range("2001:db8::/32").family == AF_INET6);
	CHECK(range("0.0.0.0/0").contains(*Endpoint::parse("203.0.113.1:1")));
	auto hostBits = Cidr::parse("198.51.100.1/24");
	REQUIRE_FALSE(hostBits.ok());
	CHECK(hostBits.error().what.find("198.51.100.0/24") != std::string::npos);
	CHECK(Cidr::parse("198.51.100.1/24", Cidr::HostBits::Allowed).ok());
	for (const char *bad : {"198.51.100.0", "198.51.100.0/33", "2001:db8::/129", "198.51.100.0/-1", "198.51.100.0/",
				"x/24", "198.51.100.0/24x", ""})
		CHECK_MESSAGE(!Cidr::parse(bad).ok(), bad);
	CHECK_FALSE(Cidr::parse("198.51.100.0/ 24").ok());

	Cidr r = range("198.51.100.64/26");
	CHECK(r.contains(*Endpoint::parse("198.51.100.64:1")));
	CHECK(r.contains(*Endpoint::parse("198.51.100.127:1")));
	CHECK_FALSE(r.contains(*Endpoint::parse("198.51.100.128:1")));
	CHECK_FALSE(r.contains(*Endpoint::parse("198.51.100.63:1")));
	// An IPv4-mapped address is IPv6: it does not slip into an IPv4 range.
	CHECK_FALSE(r.contains(*Endpoint::parse("[::ffff:198.51.100.70]:1")));
	Cidr r6 = range("2001:db8:1:8000::/49");
	CHECK(r6.contains(*Endpoint::parse("[2001:db8:1:8000::1]:1")));
	CHECK_FALSE(r6.contains(*Endpoint::parse("[2001:db8:1:7fff::1]:1")));
	CHECK(r6.toString() == "2001:db8:1:8000::/49");
}

TEST_CASE("a request inside the allowlist passes")
{
	CHECK(refusal(sampleAllow(), sampleRequest()) == "");
}

TEST_CASE("each way out of the allowlist is refused with its reason")
{
	Allowlist allow = sampleAllow();
	auto r = sampleRequest();
	r.targetNetns = "other";
	CHECK(refusal(allow, r) == "targetNetns 'other' is not in the allowed namespaces");
	r.targetNetns = "";
	CHECK(refusal(allow, r) == "targetNetns 'self' is not in the allowed namespaces");
	r.targetNetns = "/run/netns/ct-1/../../../proc/1/ns/net";
	CHECK(refusal(allow, r) == "targetNetns '/run/netns/ct-1/../../../proc/1/ns/net' contains '..'");
	r.targetNetns = "/run/netns/ct-a/b";
	CHECK(refusal(allow, r) == "targetNetns '/run/netns/ct-a/b' is not in the allowed namespaces");
	r.targetNetns = "/run/netns/ct-a";
	CHECK(refusal(allow, r) == "");

	r = sampleRequest();
	r.addresses[1].targetInterface = "lo";
	CHECK(refusal(allow, r) == "addresses[1].targetInterface 'lo' is not in the allowed interfaces");

	r = sampleRequest();
	r.addresses[0].cidr = "198.51.100.200/24";
	CHECK(refusal(allow, r) == "addresses[0].cidr 198.51.100.200/24 is outside the allowed address ranges");
	r.addresses[0].cidr = "2001:db8:2::1/64";
	CHECK(refusal(allow, r) == "addresses[0].cidr 2001:db8:2::1/64 is outside the allowed address ranges");

	r = sampleRequest();
	r.connections.push_back(connection("203.0.113.5:80"));
	CHECK(refusal(allow, r) == "connections[4].flow.local 203.0.113.5:80 is outside the allowed address ranges");
	r = sampleRequest();
	r.connections.push_back(connection("[2001:db8:2::1]:80"));
	CHECK(refusal(allow, r) == "connections[4].flow.local [2001:db8:2::1]:80 is outside the allowed address ranges");
	// The wildcard is only fine for listeners.
	r = sampleRequest();
	r.connections.push_back(connection("0.0.0.0:80", "ESTABLISHED"));
	CHECK(refusal(allow, r) == "connections[4].flow.local 0.0.0.0:80 is outside the allowed address ranges");
}

TEST_CASE("empty lists allow nothing, '*' allows any name")
{
	CHECK(refusal(Allowlist{}, sampleRequest()) == "targetNetns 'ferry-b' is not in the allowed namespaces");
	Allowlist any;
	any.netns = {"*"};
	any.interfaces = {"*"};
	any.addresses = {range("0.0.0.0/0"), range("::/0")};
	CHECK(refusal(any, sampleRequest()) == "");
	CHECK(matchesAny({"*"}, "self"));
	CHECK_FALSE(matchesAny({"*"}, "/run/netns/x"));
}
