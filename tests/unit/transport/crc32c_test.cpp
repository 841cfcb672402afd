#include <doctest/doctest.h>

#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "transport/crc32c.h"

using namespace ferry::transport;

TEST_CASE("CRC32C matches the published check values")
{
	// "123456789" is the standard check input; the 32-byte vectors are
	// RFC 3720 (iSCSI) appendix B.4.
	CHECK(crc32c(0, "123456789", 9) == 0xE3069283u);
	CHECK(crc32cPortable(0, "123456789", 9) == 0xE3069283u);
	std::vector<uint8_t> zeros(32, 0), ones(32, 0xff), ramp(32);
	for (size_t i = 0; i < ramp.size(); i++)
		ramp[i] = static_cast<uint8_t>(i);
	CHECK(crc32c(0, zeros) == 0x8A9136AAu);
	CHECK(crc32c(0, ones) == 0x62A8AB43u);
	CHECK(crc32c(0, ramp) == 0x46DD794Eu);
	CHECK(crc32c(0, nullptr, 0) == 0u);
}

TEST_CASE("CRC32C: hardware and portable paths agree, and extending equals one pass")
{
	std::mt19937 rng(7);
	std::vector<uint8_t> data(10000);
	for (uint8_t &b : data)
		b = static_cast<uint8_t>(rng());
	for (size_t start : {0, 1, 3, 7}) {
		for (size_t length : {0, 1, 7, 8, 9, 63, 64, 65, 4097, 9000}) {
			const uint8_t *p = data.data() + start;
			uint32_t whole = crc32c(0, p, length);
			CHECK(whole == crc32cPortable(0, p, length));
			size_t cut = length / 3;
			CHECK(crc32c(crc32c(0, p, cut), p + cut, length - cut) == whole);
		}
	}
}
