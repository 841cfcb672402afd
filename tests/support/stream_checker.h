// Checksummed, position-dependent test streams for TCP round trips.
//
// Every byte of a test stream is a function of (seed, offset), so a
// receiver that knows how many bytes it has verified can check each new
// byte on its own: a lost, duplicated or reordered byte shows up as a
// mismatch at a precise offset, and a stream from another connection
// (other seed) fails at once. Two directions of one connection use two
// seeds.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace ferry::test {

// The byte at `offset` of stream `seed`.
uint8_t streamByte(uint64_t seed, uint64_t offset);

// Produces a stream, in pieces, from offset 0 on.
class StreamSource {
public:
	explicit StreamSource(uint64_t seed) : seed_(seed) {}
	// The next `length` bytes, without moving on.
	std::vector<uint8_t> peek(size_t length) const;
	// Moves on by `length` bytes (what the socket accepted).
	void advance(size_t length) { offset_ += length; }
	// peek() then advance().
	std::vector<uint8_t> next(size_t length);
	uint64_t offset() const { return offset_; }

private:
	uint64_t seed_;
	uint64_t offset_ = 0;
};

// Verifies a stream, in pieces, from offset 0 on.
class StreamVerifier {
public:
	explicit StreamVerifier(uint64_t seed) : seed_(seed) {}
	// Checks `data` as the continuation of what was verified so far. After
	// the first mismatch every later call fails too, and firstMismatch()
	// tells where the stream broke.
	bool verify(const uint8_t *data, size_t length);
	uint64_t offset() const { return offset_; }
	std::optional<uint64_t> firstMismatch() const { return mismatch_; }

private:
	uint64_t seed_;
	uint64_t offset_ = 0;
	std::optional<uint64_t> mismatch_;
};

// Blocking helpers over a socket fd, with a deadline (milliseconds).
// They never throw; the result says what happened.
struct TransferResult {
	size_t bytes = 0;     // moved before stopping
	bool eof = false;     // the reader saw end of stream
	int error = 0;        // errno that stopped the transfer, 0 if none
	bool timedOut = false;
	std::string describe() const;
};

// Writes exactly `length` bytes of `source` (poll + send).
TransferResult writeStream(int fd, StreamSource &source, size_t length, int timeoutMs = 10000);
// Writes as much as the socket accepts without blocking (until EAGAIN).
TransferResult fillStream(int fd, StreamSource &source, size_t limit);
// Reads and verifies exactly `length` bytes, or up to EOF/error.
TransferResult readStream(int fd, StreamVerifier &verifier, size_t length, int timeoutMs = 10000);
// Reads and verifies until EOF or error (no length known).
TransferResult readToEnd(int fd, StreamVerifier &verifier, int timeoutMs = 10000);

} // namespace ferry::test
