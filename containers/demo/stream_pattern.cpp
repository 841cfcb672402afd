#include "stream_pattern.h"

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace ferry::demo {

namespace {

// Slicing-by-8 tables, built once: the demo checks hundreds of MB/s on a
// test run, so the byte-at-a-time loop would dominate its CPU.
struct CrcTables {
	uint32_t t[8][256];

	constexpr CrcTables() : t{}
	{
		for (uint32_t i = 0; i < 256; i++) {
			uint32_t c = i;
			for (int k = 0; k < 8; k++)
				c = (c & 1) ? (c >> 1) ^ 0xEDB88320u : c >> 1;
			t[0][i] = c;
		}
		for (uint32_t i = 0; i < 256; i++)
			for (int s = 1; s < 8; s++)
				t[s][i] = (t[s - 1][i] >> 8) ^ t[0][t[s - 1][i] & 0xff];
	}
};

constexpr CrcTables kCrc;

uint64_t splitmix64(uint64_t &state)
{
	uint64_t z = (state += 0x9E3779B97F4A7C15ull);
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
	return z ^ (z >> 31);
}

// The per-stream key: the two directions of one connection share a seed
// but must not carry the same bytes, or a reflected stream would verify.
uint64_t streamKey(uint64_t seed, Direction direction)
{
	uint64_t state = seed ^ (direction == Direction::ServerToClient ? 0xD1B54A32D192ED03ull : 0);
	return splitmix64(state);
}

void storeLe64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = static_cast<uint8_t>(v >> (8 * i));
}

void storeLe32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = static_cast<uint8_t>(v >> (8 * i));
}

uint64_t loadLe64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

uint32_t loadLe32(const uint8_t *p)
{
	uint32_t v = 0;
	for (int i = 3; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

} // namespace

const char *directionName(Direction direction)
{
	return direction == Direction::ClientToServer ? "client-to-server" : "server-to-client";
}

uint32_t crc32(std::span<const uint8_t> data, uint32_t previous)
{
	uint32_t c = ~previous;
	const uint8_t *p = data.data();
	size_t n = data.size();
	while (n >= 8) {
		uint32_t lo = c ^ loadLe32(p);
		uint32_t hi = loadLe32(p + 4);
		c = kCrc.t[7][lo & 0xff] ^ kCrc.t[6][(lo >> 8) & 0xff] ^
		    kCrc.t[5][(lo >> 16) & 0xff] ^ kCrc.t[4][lo >> 24] ^
		    kCrc.t[3][hi & 0xff] ^ kCrc.t[2][(hi >> 8) & 0xff] ^
		    kCrc.t[1][(hi >> 16) & 0xff] ^ kCrc.t[0][hi >> 24];
		p += 8;
		n -= 8;
	}
	while (n--)
		c = (c >> 8) ^ kCrc.t[0][(c ^ *p++) & 0xff];
	return ~c;
}

void buildFrame(uint64_t seed, Direction direction, uint64_t frameNumber,
		std::span<uint8_t, kFrameSize> out)
{
	uint8_t *p = out.data();
	storeLe64(p, frameNumber);
	uint64_t state = streamKey(seed, direction) ^ (frameNumber * 0xC2B2AE3D27D4EB4Full);
	size_t at = kFrameHeaderSize;
	const size_t end = kFrameHeaderSize + kFramePayloadSize;
	while (at < end) {
		uint8_t word[8];
		storeLe64(word, splitmix64(state));
		size_t take = std::min<size_t>(8, end - at);
		std::memcpy(p + at, word, take);
		at += take;
	}
	storeLe32(p + end, crc32(out.first(end)));
}

bool frameChecksumMatches(std::span<const uint8_t, kFrameSize> frame)
{
	const size_t end = kFrameSize - kFrameTrailerSize;
	return crc32(frame.first(end)) == loadLe32(frame.data() + end);
}

StreamPattern::StreamPattern(uint64_t seed, Direction direction)
	: seed_(seed), direction_(direction)
{
}

const std::array<uint8_t, kFrameSize> &StreamPattern::frame(uint64_t frameNumber)
{
	if (frameNumber != cachedFrame_) {
		buildFrame(seed_, direction_, frameNumber, frame_);
		cachedFrame_ = frameNumber;
	}
	return frame_;
}

void StreamPattern::fill(uint64_t offset, std::span<uint8_t> out)
{
	size_t done = 0;
	while (done < out.size()) {
		uint64_t at = offset + done;
		size_t inFrame = static_cast<size_t>(at % kFrameSize);
		size_t take = std::min(kFrameSize - inFrame, out.size() - done);
		std::memcpy(out.data() + done, frame(at / kFrameSize).data() + inFrame, take);
		done += take;
	}
}

StreamVerifier::StreamVerifier(uint64_t seed, Direction direction, uint64_t offset)
	: pattern_(seed, direction), offset_(offset)
{
}

Status StreamVerifier::consume(std::span<const uint8_t> data)
{
	if (failed_)
		return failure_;
	std::array<uint8_t, kFrameSize> expected;
	size_t done = 0;
	while (done < data.size()) {
		size_t inFrame = static_cast<size_t>(offset_ % kFrameSize);
		size_t take = std::min(kFrameSize - inFrame, data.size() - done);
		std::span<uint8_t> want(expected.data(), take);
		pattern_.fill(offset_, want);
		if (std::memcmp(want.data(), data.data() + done, take) != 0) {
			size_t bad = 0;
			while (want[bad] == data[done + bad])
				bad++;
			offset_ += bad;
			char detail[160];
			std::snprintf(detail, sizeof(detail),
				"stream byte differs at offset %llu (frame %llu, byte %zu of frame): expected 0x%02x, received 0x%02x",
				static_cast<unsigned long long>(offset_),
				static_cast<unsigned long long>(offset_ / kFrameSize),
				static_cast<size_t>(offset_ % kFrameSize), want[bad], data[done + bad]);
			failed_ = true;
			failure_ = makeError(detail, EBADMSG);
			failure_.at("seed", std::to_string(pattern_.seed()));
			failure_.at("direction", directionName(pattern_.direction()));
			return failure_;
		}
		offset_ += take;
		done += take;
	}
	return {};
}

std::array<uint8_t, kHelloSize> encodeHello(const Hello &hello)
{
	std::array<uint8_t, kHelloSize> out{};
	std::memcpy(out.data(), kHelloMagic.data(), kHelloMagic.size());
	storeLe32(out.data() + 4, hello.idle ? 1u : 0u);
	storeLe64(out.data() + 8, hello.seed);
	return out;
}

Result<Hello> decodeHello(std::span<const uint8_t, kHelloSize> bytes)
{
	if (std::memcmp(bytes.data(), kHelloMagic.data(), kHelloMagic.size()) != 0)
		return makeError("connection did not start with the demo hello (wrong magic)", EPROTO);
	uint32_t flags = loadLe32(bytes.data() + 4);
	if (flags & ~1u)
		return makeError("demo hello has unknown flags " + std::to_string(flags), EPROTO);
	Hello hello;
	hello.idle = (flags & 1u) != 0;
	hello.seed = loadLe64(bytes.data() + 8);
	return hello;
}

} // namespace ferry::demo
