#include <doctest/doctest.h>

#include <netinet/in.h>
#include <linux/netfilter.h>

#include <string>

#include "netlock/lock_table.h"

using namespace ferry;
using namespace ferry::netlock;

namespace {

FlowId flow(const char *local, const char *remote)
{
	Result<Endpoint> l = Endpoint::parse(local);
	Result<Endpoint> r = Endpoint::parse(remote);
	REQUIRE(l.ok());
	REQUIRE(r.ok());
	return FlowId{*l, *r};
}

std::string hex(const FlowKey &key)
{
	static const char digits[] = "0123456789abcdef";
	std::string out;
	for (size_t i = 0; i < key.length; ++i) {
		out += digits[key.bytes[i] >> 4];
		out += digits[key.bytes[i] & 0xf];
	}
	return out;
}

} // namespace

TEST_CASE("migration ids that make a plain table name are accepted")
{
	CHECK(validateMigrationId("m1").ok());
	CHECK(validateMigrationId("0b5c1e9a-7f4e-4a51-9a43-3f1f8e2a9d10").ok());
	CHECK(validateMigrationId("A_b-9").ok());
	CHECK(validateMigrationId(std::string(kMaxMigrationIdLength, 'x')).ok());
	CHECK(tableName("m1") == "ferry_m1");
}

TEST_CASE("bad migration ids are refused with a reason")
{
	Status empty = validateMigrationId("");
	REQUIRE_FALSE(empty.ok());
	CHECK(empty.error().code == EINVAL);
	CHECK(empty.error().what.find("empty") != std::string::npos);

	Status tooLong = validateMigrationId(std::string(kMaxMigrationIdLength + 1, 'x'));
	REQUIRE_FALSE(tooLong.ok());
	CHECK(tooLong.error().what.find("65 characters") != std::string::npos);

	for (const char *bad : {"a b", "a/b", "../x", "a.b", "a;b", "ä", "a\nb", "a\"b"}) {
		CAPTURE(bad);
		Status s = validateMigrationId(bad);
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().code == EINVAL);
		CHECK(s.error().what.find("[A-Za-z0-9_-]") != std::string::npos);
	}
}

TEST_CASE("the table comment round-trips and stays under nft's comment limit")
{
	std::string longest(kMaxMigrationIdLength, 'z');
	std::string comment = tableComment(longest, 1714564800);
	CHECK(comment == "ferry migration=" + longest + " created=2024-05-01T12:00:00Z");
	CHECK(comment.size() < 128);
	auto parsed = parseTableComment(comment);
	REQUIRE(parsed);
	CHECK(parsed->migrationId == longest);
	CHECK(parsed->created == 1714564800);
}

TEST_CASE("comments that ferry did not write do not parse")
{
	CHECK_FALSE(parseTableComment(""));
	CHECK_FALSE(parseTableComment("ferry"));
	CHECK_FALSE(parseTableComment("ferry migration=m1"));
	CHECK_FALSE(parseTableComment("ferry migration=m1 created=yesterday"));
	CHECK_FALSE(parseTableComment("ferry migration=m1 created=2024-05-01T12:00:00Z trailing"));
	CHECK_FALSE(parseTableComment("ferry migration=a/b created=2024-05-01T12:00:00Z"));
	CHECK_FALSE(parseTableComment("my ferry migration=m1 created=2024-05-01T12:00:00Z"));
}

TEST_CASE("only an inet table named after the id its ferry comment names is ferry's")
{
	std::string comment = tableComment("m1", 1714564800);
	auto owner = ferryTableOwner(NFPROTO_INET, "ferry_m1", comment);
	REQUIRE(owner);
	CHECK(owner->migrationId == "m1");

	CHECK_FALSE(ferryTableOwner(NFPROTO_IPV4, "ferry_m1", comment));   // other family
	CHECK_FALSE(ferryTableOwner(NFPROTO_INET, "ferry_m1", ""));        // no comment
	CHECK_FALSE(ferryTableOwner(NFPROTO_INET, "ferry_m1", "keep me")); // foreign comment
	CHECK_FALSE(ferryTableOwner(NFPROTO_INET, "ferry_m2", comment));   // name and comment disagree
	CHECK_FALSE(ferryTableOwner(NFPROTO_INET, "filter", comment));     // no prefix
	CHECK_FALSE(ferryTableOwner(NFPROTO_INET, "xferry_m1", comment));
}

TEST_CASE("IPv4 keys are local address . port . remote address . port, 32-bit padded")
{
	auto key = encodeFlowKey(flow("198.51.100.1:80", "198.51.100.2:4660"));
	REQUIRE(key.ok());
	CHECK(key->family == AF_INET);
	CHECK(key->length == kKeyLength4);
	CHECK(hex(*key) == "c6336401" "00500000" "c6336402" "12340000");
}

TEST_CASE("IPv6 keys are 40 bytes")
{
	auto key = encodeFlowKey(flow("[2001:db8::1]:443", "[2001:db8::2]:1"));
	REQUIRE(key.ok());
	CHECK(key->family == AF_INET6);
	CHECK(key->length == kKeyLength6);
	CHECK(hex(*key) == "20010db8000000000000000000000001" "01bb0000"
	                   "20010db8000000000000000000000002" "00010000");
}

TEST_CASE("IPv4-mapped IPv6 flows are keyed as the IPv4 they are on the wire")
{
	auto mapped = encodeFlowKey(flow("[::ffff:198.51.100.1]:80", "[::ffff:198.51.100.2]:4660"));
	auto plain = encodeFlowKey(flow("198.51.100.1:80", "198.51.100.2:4660"));
	REQUIRE(mapped.ok());
	REQUIRE(plain.ok());
	CHECK(mapped->family == AF_INET);
	CHECK(hex(*mapped) == hex(*plain));

	// A dual-stack socket reports a v4-mapped local end; the peer may be
	// given as plain IPv4.
	auto half = encodeFlowKey(flow("[::ffff:198.51.100.1]:80", "198.51.100.2:4660"));
	REQUIRE(half.ok());
	CHECK(hex(*half) == hex(*plain));
}

TEST_CASE("flows that name no connection are refused, naming the flow")
{
	auto mixed = encodeFlowKey(flow("198.51.100.1:80", "[2001:db8::2]:1"));
	REQUIRE_FALSE(mixed.ok());
	CHECK(mixed.error().code == EINVAL);
	CHECK(mixed.error().context.find("flow=198.51.100.1:80->[2001:db8::2]:1") != std::string::npos);

	auto portZero = encodeFlowKey(flow("198.51.100.1:0", "198.51.100.2:1"));
	REQUIRE_FALSE(portZero.ok());
	CHECK(portZero.error().what.find("port 0") != std::string::npos);

	FlowId empty;
	CHECK_FALSE(encodeFlowKey(empty).ok());
}

TEST_CASE("set key types are nft's concatenations of address and service")
{
	// nft: ipv4_addr (7), ipv6_addr (8), inet_service (13), 6 bits each.
	CHECK(setKeyType(AF_INET) == ((((7u << 6) | 13u) << 6 | 7u) << 6 | 13u));
	CHECK(setKeyType(AF_INET6) == ((((8u << 6) | 13u) << 6 | 8u) << 6 | 13u));
}
