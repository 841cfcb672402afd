#include "crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace ferry::transport {

namespace {

constexpr uint32_t kPolynomial = 0x82F63B78; // reflected Castagnoli

// Slicing-by-8 tables: table[k][b] is the CRC of byte b followed by k zero
// bytes, so eight input bytes are folded with eight lookups.
constexpr std::array<std::array<uint32_t, 256>, 8> makeTables()
{
	std::array<std::array<uint32_t, 256>, 8> t{};
	for (uint32_t b = 0; b < 256; b++) {
		uint32_t c = b;
		for (int i = 0; i < 8; i++)
			c = (c & 1) ? (c >> 1) ^ kPolynomial : c >> 1;
		t[0][b] = c;
	}
	for (uint32_t b = 0; b < 256; b++)
		for (size_t k = 1; k < 8; k++)
			t[k][b] = (t[k - 1][b] >> 8) ^ t[0][t[k - 1][b] & 0xff];
	return t;
}

constexpr auto kTables = makeTables();

uint32_t portableRaw(uint32_t c, const uint8_t *p, size_t n)
{
	while (n >= 8) {
		uint64_t v;
		std::memcpy(&v, p, 8);
		// Little-endian load; the tables assume the low byte comes first.
		uint32_t lo = static_cast<uint32_t>(v) ^ c;
		uint32_t hi = static_cast<uint32_t>(v >> 32);
		c = kTables[7][lo & 0xff] ^ kTables[6][(lo >> 8) & 0xff] ^
		    kTables[5][(lo >> 16) & 0xff] ^ kTables[4][lo >> 24] ^
		    kTables[3][hi & 0xff] ^ kTables[2][(hi >> 8) & 0xff] ^
		    kTables[1][(hi >> 16) & 0xff] ^ kTables[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = (c >> 8) ^ kTables[0][(c ^ *p++) & 0xff];
	return c;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t hardwareRaw(uint32_t c, const uint8_t *p, size_t n)
{
	uint64_t c64 = c;
	while (n >= 8) {
		uint64_t v;
		std::memcpy(&v, p, 8);
		c64 = _mm_crc32_u64(c64, v);
		p += 8;
		n -= 8;
	}
	c = static_cast<uint32_t>(c64);
	while (n--)
		c = _mm_crc32_u8(c, *p++);
	return c;
}

bool haveHardwareCrc()
{
	static const bool have = __builtin_cpu_supports("sse4.2");
	return have;
}
#endif

} // namespace

uint32_t crc32cPortable(uint32_t crc, const void *data, size_t size)
{
	return ~portableRaw(~crc, static_cast<const uint8_t *>(data), size);
}

uint32_t crc32c(uint32_t crc, const void *data, size_t size)
{
#if defined(__x86_64__)
	if (haveHardwareCrc())
		return ~hardwareRaw(~crc, static_cast<const uint8_t *>(data), size);
#endif
	return crc32cPortable(crc, data, size);
}

} // namespace ferry::transport
