#include <doctest/doctest.h>

#include <array>

#include "repair/crafted_segment.h"

using namespace ferry;
using namespace ferry::repair;

namespace {

// One's-complement sum including the stored checksum: 0xffff when valid.
uint16_t sum16(const uint8_t *data, size_t length, uint32_t sum)
{
	for (size_t i = 0; i + 1 < length; i += 2)
		sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return static_cast<uint16_t>(sum);
}

uint32_t get32(const uint8_t *p)
{
	return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 | static_cast<uint32_t>(p[2]) << 8 | p[3];
}

CraftedSegment segmentFor(const char *local, const char *remote)
{
	CraftedSegment s;
	s.flow.local = *Endpoint::parse(local);
	s.flow.remote = *Endpoint::parse(remote);
	s.seq = 0xdeadbeef;
	s.ack = 0x01020304;
	s.flags = kSegmentFin | kSegmentAck;
	s.window = 1234;
	return s;
}

} // namespace

TEST_CASE("an IPv4 segment goes from the peer to us with valid checksums")
{
	CraftedSegment s = segmentFor("198.51.100.2:8080", "198.51.100.1:40000");
	std::array<uint8_t, 128> buf{};
	auto length = buildSegment(s, buf.data(), buf.size());
	REQUIRE(length.ok());
	REQUIRE(*length == 40);
	const uint8_t *ip = buf.data();
	CHECK(ip[0] == 0x45);
	CHECK(ip[9] == 6);
	CHECK(sum16(ip, 20, 0) == 0xffff);
	CHECK(ip[12] == 198); // source: the peer
	CHECK(ip[15] == 1);
	CHECK(ip[19] == 2); // destination: us
	const uint8_t *tcp = ip + 20;
	CHECK((tcp[0] << 8 | tcp[1]) == 40000);
	CHECK((tcp[2] << 8 | tcp[3]) == 8080);
	CHECK(get32(tcp + 4) == 0xdeadbeef);
	CHECK(get32(tcp + 8) == 0x01020304);
	CHECK(tcp[13] == (kSegmentFin | kSegmentAck));
	CHECK((tcp[14] << 8 | tcp[15]) == 1234);
	uint32_t pseudo = 0;
	pseudo += (ip[12] << 8 | ip[13]) + (ip[14] << 8 | ip[15]) + (ip[16] << 8 | ip[17]) + (ip[18] << 8 | ip[19]);
	pseudo += 6 + 20;
	CHECK(sum16(tcp, 20, pseudo) == 0xffff);
}

TEST_CASE("IPv4-mapped endpoints produce an IPv4 packet")
{
	CraftedSegment s = segmentFor("[::ffff:198.51.100.2]:8080", "[::ffff:198.51.100.1]:40000");
	std::array<uint8_t, 128> buf{};
	auto length = buildSegment(s, buf.data(), buf.size());
	REQUIRE(length.ok());
	CHECK(*length == 40);
	CHECK(buf[0] == 0x45);
}

TEST_CASE("an IPv6 segment carries a valid checksum over the pseudo-header")
{
	CraftedSegment s = segmentFor("[2001:db8::2]:8080", "[2001:db8::1]:40000");
	std::array<uint8_t, 128> buf{};
	auto length = buildSegment(s, buf.data(), buf.size());
	REQUIRE(length.ok());
	REQUIRE(*length == 60);
	CHECK(buf[0] == 0x60);
	CHECK(buf[6] == 6);
	CHECK(buf[23] == 1);  // source ends in ::1 (the peer)
	CHECK(buf[39] == 2);  // destination ends in ::2 (us)
	uint32_t pseudo = 0;
	for (size_t i = 8; i < 40; i += 2)
		pseudo += static_cast<uint32_t>(buf[i] << 8 | buf[i + 1]);
	pseudo += 20 + 6;
	CHECK(sum16(buf.data() + 40, 20, pseudo) == 0xffff);
}

TEST_CASE("mixed families and small buffers are refused")
{
	std::array<uint8_t, 128> buf{};
	CraftedSegment mixed = segmentFor("198.51.100.2:1", "[2001:db8::1]:2");
	CHECK_FALSE(buildSegment(mixed, buf.data(), buf.size()).ok());
	CraftedSegment v4 = segmentFor("198.51.100.2:1", "198.51.100.1:2");
	CHECK_FALSE(buildSegment(v4, buf.data(), 39).ok());
}
