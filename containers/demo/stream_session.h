// StreamSession: one TCP connection carrying the demo streams, one
// direction sent from the pattern and the other verified against it.
//
// A session keeps no bytes in memory between calls: what it sent is
// exactly what write() accepted, what it received is exactly what read()
// returned and was verified. So its whole state is (seed, sent, received),
// which is what the server hands over at a migration's safe point.
//
// Sessions do plain non-blocking I/O on a socket they own. The caller owns
// the event loop: it decides when to call receive() and send() and how
// much each may move (fairness between connections, rate limiting).
// Not thread-safe: the demo programs are single-threaded.
#pragma once

#include <chrono>
#include <cstdint>

#include "base/error.h"
#include "base/unique_fd.h"
#include "stream_pattern.h"

namespace ferry::demo {

using Clock = std::chrono::steady_clock;

// A per-connection byte budget. 0 bytes/s means unlimited. The bucket holds
// at most 100 ms worth of tokens, so a pause (a migration) is not followed
// by a catch-up burst.
class TokenBucket {
public:
	TokenBucket(uint64_t bytesPerSecond, Clock::time_point now);

	bool unlimited() const { return rate_ == 0; }
	// Adds the tokens earned since the previous refill.
	void refill(Clock::time_point now);
	// Bytes that may be sent now; UINT64_MAX when unlimited.
	uint64_t available() const;
	void spend(uint64_t bytes);

private:
	uint64_t rate_;
	double tokens_ = 0;
	double burst_;
	Clock::time_point last_;
};

class StreamSession {
public:
	// Stream offsets to start from: 0/0 for a new connection, the handed-over
	// ones for an adopted connection.
	struct Position {
		uint64_t sent = 0;
		uint64_t received = 0;
	};

	// `fd` is a connected, non-blocking TCP socket whose hello has already
	// been exchanged. `outbound` is the direction this side sends; it
	// verifies the other one.
	StreamSession(UniqueFd fd, Direction outbound, Hello hello, Position start);

	int fd() const { return fd_.get(); }
	const Hello &hello() const { return hello_; }
	Direction outbound() const { return outbound_; }
	// The offset of the next byte to send (= bytes sent since the stream began).
	uint64_t sent() const { return sent_; }
	// Bytes received and verified since the stream began.
	uint64_t received() const { return verifier_.offset(); }
	// Gives up the socket (the session is unusable afterwards).
	UniqueFd releaseFd() { return std::move(fd_); }

	struct ReceiveResult {
		size_t bytes = 0;
		bool endOfStream = false;
	};
	// Reads and verifies at most `maxBytes` bytes that are already queued.
	// Fails with the socket's error (ECONNRESET...), with EBADMSG on a byte
	// that does not match the pattern, or with EPROTO on any byte arriving on
	// an idle session.
	Result<ReceiveResult> receive(size_t maxBytes);

	struct SendResult {
		size_t bytes = 0;
		bool wouldBlock = false;
	};
	// Writes at most `maxBytes` pattern bytes (nothing on an idle session).
	Result<SendResult> send(size_t maxBytes);

private:
	UniqueFd fd_;
	Direction outbound_;
	Hello hello_;
	StreamPattern pattern_;
	StreamVerifier verifier_;
	uint64_t sent_;
};

} // namespace ferry::demo
