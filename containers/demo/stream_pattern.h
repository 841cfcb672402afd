// The demo's byte streams: what each side sends, and how the other side
// checks it.
//
// Every byte of a stream is a pure function of (seed, direction, offset),
// so a receiver can verify any byte knowing only its offset, and a stream
// can be resumed at any offset by a process that has none of the old
// process's memory: the position in the stream *is* the state. That is
// what makes the demo a fair test of a migration: a lost, duplicated or
// reordered byte changes what arrives at some offset, and the receiver
// sees it.
//
// A stream is a sequence of fixed-size frames:
//   [frame number, u64 little-endian]
//   [payload, derived from (seed, direction, frame number)]
//   [CRC-32 (IEEE) of the two fields above, u32 little-endian]
// The frame number and CRC make a captured stream readable on its own
// (a hex dump shows which frame went missing); the verifier does not need
// them, it compares every byte with the one it expects.
//
// A connection starts with a fixed-size hello from the client: it carries
// the seed and flags and is not part of either stream (stream offsets count
// from the byte after it).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/error.h"

namespace ferry::demo {

enum class Direction : uint8_t {
	ClientToServer = 0,
	ServerToClient = 1,
};

const char *directionName(Direction direction);

inline constexpr size_t kFrameSize = 512;
inline constexpr size_t kFrameHeaderSize = 8;  // frame number
inline constexpr size_t kFrameTrailerSize = 4; // CRC-32
inline constexpr size_t kFramePayloadSize = kFrameSize - kFrameHeaderSize - kFrameTrailerSize;

// CRC-32 as in zlib and Ethernet (reflected 0xEDB88320). Pass the previous
// result to continue over more data.
uint32_t crc32(std::span<const uint8_t> data, uint32_t previous = 0);

// Writes frame `frameNumber` of stream (seed, direction) into `out`.
void buildFrame(uint64_t seed, Direction direction, uint64_t frameNumber,
		std::span<uint8_t, kFrameSize> out);

// True when `frame` is a whole frame whose CRC matches its contents. It
// says nothing about which stream it belongs to.
bool frameChecksumMatches(std::span<const uint8_t, kFrameSize> frame);

// The bytes of one stream, at any offset. Keeps the last frame it built,
// so sequential reads cost one frame build per kFrameSize bytes.
class StreamPattern {
public:
	StreamPattern(uint64_t seed, Direction direction);

	// Writes the stream's bytes [offset, offset + out.size()) into `out`.
	void fill(uint64_t offset, std::span<uint8_t> out);

	uint64_t seed() const { return seed_; }
	Direction direction() const { return direction_; }

private:
	const std::array<uint8_t, kFrameSize> &frame(uint64_t frameNumber);

	uint64_t seed_;
	Direction direction_;
	uint64_t cachedFrame_ = UINT64_MAX;
	std::array<uint8_t, kFrameSize> frame_{};
};

// Checks received bytes against the pattern, in order, starting at a given
// offset. The first byte that differs fails the verifier for good: after a
// lost or extra byte every later offset is wrong too, so only the first
// mismatch says anything.
class StreamVerifier {
public:
	StreamVerifier(uint64_t seed, Direction direction, uint64_t offset = 0);

	// Verifies `data` as the stream's next bytes and advances the offset.
	// On a mismatch returns an Error (code EBADMSG) naming the offset, the
	// frame and the expected and received byte; the offset then stays at
	// the first bad byte and later calls fail at once with the same error.
	Status consume(std::span<const uint8_t> data);

	// Bytes verified so far, counted from the start of the stream.
	uint64_t offset() const { return offset_; }
	bool failed() const { return failed_; }

private:
	StreamPattern pattern_;
	uint64_t offset_;
	bool failed_ = false;
	Error failure_;
};

// The client's hello.
inline constexpr size_t kHelloSize = 16;
inline constexpr std::array<uint8_t, 4> kHelloMagic = {'F', 'D', 'M', '1'};

struct Hello {
	uint64_t seed = 0;
	// Neither side streams: the connection only stays open (benchmarks of
	// idle connections).
	bool idle = false;

	friend bool operator==(const Hello &, const Hello &) = default;
};

std::array<uint8_t, kHelloSize> encodeHello(const Hello &hello);
// Fails (EPROTO) on a wrong magic or unknown flags.
Result<Hello> decodeHello(std::span<const uint8_t, kHelloSize> bytes);

} // namespace ferry::demo
