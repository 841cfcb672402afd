#include <doctest/doctest.h>

#include <algorithm>
#include <cstring>
#include <string_view>
#include <vector>

#include "stream_pattern.h"

using namespace ferry;
using namespace ferry::demo;

namespace {

std::vector<uint8_t> streamBytes(uint64_t seed, Direction d, uint64_t offset, size_t len)
{
	std::vector<uint8_t> out(len);
	StreamPattern(seed, d).fill(offset, out);
	return out;
}

} // namespace

TEST_CASE("crc32 matches the standard check value")
{
	std::string_view check = "123456789";
	CHECK(crc32({reinterpret_cast<const uint8_t *>(check.data()), check.size()}) == 0xCBF43926u);
	// Continuing over a split gives the same result as one pass.
	auto bytes = std::span(reinterpret_cast<const uint8_t *>(check.data()), check.size());
	CHECK(crc32(bytes.subspan(4), crc32(bytes.first(4))) == 0xCBF43926u);
	CHECK(crc32({}) == 0u);
}

TEST_CASE("a frame carries its number and a checksum over its contents")
{
	std::array<uint8_t, kFrameSize> frame;
	buildFrame(42, Direction::ServerToClient, 7, frame);
	uint64_t number = 0;
	for (int i = 7; i >= 0; i--)
		number = (number << 8) | frame[static_cast<size_t>(i)];
	CHECK(number == 7);
	CHECK(frameChecksumMatches(frame));
	frame[100] ^= 0x01;
	CHECK_FALSE(frameChecksumMatches(frame));
}

TEST_CASE("the pattern is a pure function of seed, direction and offset")
{
	auto whole = streamBytes(1, Direction::ClientToServer, 0, 5 * kFrameSize + 17);
	// Any slice, from a fresh pattern, equals the same slice of the whole.
	for (uint64_t offset : {0ull, 1ull, 511ull, 512ull, 513ull, 1000ull, 2047ull}) {
		for (size_t len : {size_t(1), size_t(3), kFrameSize, kFrameSize + 1, size_t(1500)}) {
			if (offset + len > whole.size())
				continue;
			auto slice = streamBytes(1, Direction::ClientToServer, offset, len);
			CHECK(std::equal(slice.begin(), slice.end(), whole.begin() + static_cast<long>(offset)));
		}
	}
	// Seeds and directions give different streams.
	CHECK(streamBytes(1, Direction::ServerToClient, 0, 4096) != streamBytes(1, Direction::ClientToServer, 0, 4096));
	CHECK(streamBytes(2, Direction::ClientToServer, 0, 4096) != streamBytes(1, Direction::ClientToServer, 0, 4096));
	// Frames of one stream differ from each other, so a repeated frame shows.
	auto two = streamBytes(1, Direction::ClientToServer, 0, 2 * kFrameSize);
	CHECK(std::memcmp(two.data() + kFrameHeaderSize, two.data() + kFrameSize + kFrameHeaderSize, kFramePayloadSize) != 0);
}

TEST_CASE("the verifier accepts the stream in any chunking and resumes at any offset")
{
	auto data = streamBytes(99, Direction::ServerToClient, 0, 10000);
	StreamVerifier whole(99, Direction::ServerToClient);
	size_t at = 0;
	size_t step = 1;
	while (at < data.size()) {
		size_t len = std::min(step, data.size() - at);
		REQUIRE(whole.consume(std::span(data).subspan(at, len)).ok());
		at += len;
		step = step * 3 % 1021 + 1;
	}
	CHECK(whole.offset() == data.size());
	CHECK_FALSE(whole.failed());

	// A new process knows only the offset (what a handoff carries).
	for (uint64_t resumeAt : {0ull, 1ull, 511ull, 512ull, 4099ull}) {
		StreamVerifier resumed(99, Direction::ServerToClient, resumeAt);
		CHECK(resumed.consume(std::span(data).subspan(resumeAt)).ok());
		CHECK(resumed.offset() == data.size());
	}
}

TEST_CASE("the verifier detects a flipped, lost, duplicated or reordered byte")
{
	const auto good = streamBytes(5, Direction::ClientToServer, 0, 4 * kFrameSize);
	auto check = [&](std::vector<uint8_t> bad, uint64_t expectedOffset) {
		StreamVerifier v(5, Direction::ClientToServer);
		Status s = v.consume(bad);
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().code == EBADMSG);
		CHECK(v.failed());
		CHECK(v.offset() == expectedOffset);
		CHECK(s.error().message().find("offset " + std::to_string(expectedOffset)) != std::string::npos);
		// Once failed it stays failed, even if good bytes follow.
		CHECK_FALSE(v.consume(std::span(good).first(1)).ok());
	};

	SUBCASE("flipped bit")
	{
		auto bad = good;
		bad[777] ^= 0x10;
		check(bad, 777);
	}
	SUBCASE("lost byte")
	{
		auto bad = good;
		bad.erase(bad.begin() + 1300);
		uint64_t at = 1300;
		while (good[at] == good[at + 1]) // a lost byte shows where its successor differs
			at++;
		check(bad, at);
	}
	SUBCASE("duplicated frame")
	{
		auto bad = good;
		bad.insert(bad.begin() + 2 * kFrameSize, good.begin() + kFrameSize, good.begin() + 2 * kFrameSize);
		check(bad, 2 * kFrameSize); // the frame number differs at once
	}
	SUBCASE("reordered bytes")
	{
		auto bad = good;
		size_t at = 900;
		while (bad[at] == bad[at + 1])
			at++;
		std::swap(bad[at], bad[at + 1]);
		check(bad, at);
	}
	SUBCASE("resumed at the wrong offset")
	{
		StreamVerifier v(5, Direction::ClientToServer, 1001);
		CHECK_FALSE(v.consume(std::span(good).subspan(1000, 100)).ok());
	}
	SUBCASE("another connection's stream")
	{
		StreamVerifier v(6, Direction::ClientToServer);
		CHECK_FALSE(v.consume(good).ok());
	}
}

TEST_CASE("hello round-trips and rejects what is not a hello")
{
	Hello h{0x0123456789abcdefull, true};
	auto bytes = encodeHello(h);
	auto back = decodeHello(bytes);
	REQUIRE(back.ok());
	CHECK(*back == h);
	CHECK(decodeHello(encodeHello(Hello{7, false}))->idle == false);

	auto wrongMagic = bytes;
	wrongMagic[0] = 'G';
	REQUIRE_FALSE(decodeHello(wrongMagic).ok());
	CHECK(decodeHello(wrongMagic).error().code == EPROTO);

	auto unknownFlag = bytes;
	unknownFlag[4] |= 0x2;
	CHECK_FALSE(decodeHello(unknownFlag).ok());
}
