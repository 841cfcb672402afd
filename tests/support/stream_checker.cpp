#include "stream_checker.h"

#include <poll.h>
#include <sys/socket.h>
#include <time.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

namespace ferry::test {

namespace {

// splitmix64: cheap, and every bit of the output depends on every bit of
// the input, so neighbouring words look unrelated.
uint64_t mix(uint64_t x)
{
	x += 0x9e3779b97f4a7c15ull;
	x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
	x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
	return x ^ (x >> 31);
}

int64_t nowMs()
{
	timespec t{};
	::clock_gettime(CLOCK_MONOTONIC, &t);
	return static_cast<int64_t>(t.tv_sec) * 1000 + t.tv_nsec / 1000000;
}

// Waits for `events` until the deadline; false on timeout.
bool waitFor(int fd, short events, int64_t deadline)
{
	for (;;) {
		int64_t left = deadline - nowMs();
		if (left <= 0)
			return false;
		pollfd p{fd, events, 0};
		int rc = ::poll(&p, 1, static_cast<int>(left));
		if (rc > 0)
			return true;
		if (rc < 0 && errno != EINTR)
			return true; // let the caller's syscall report the error
	}
}

} // namespace

uint8_t streamByte(uint64_t seed, uint64_t offset)
{
	uint64_t word = mix(seed * 0x100000001b3ull ^ (offset >> 3));
	return static_cast<uint8_t>(word >> ((offset & 7) * 8));
}

std::vector<uint8_t> StreamSource::peek(size_t length) const
{
	std::vector<uint8_t> out(length);
	for (size_t i = 0; i < length; ++i)
		out[i] = streamByte(seed_, offset_ + i);
	return out;
}

std::vector<uint8_t> StreamSource::next(size_t length)
{
	std::vector<uint8_t> out = peek(length);
	advance(length);
	return out;
}

bool StreamVerifier::verify(const uint8_t *data, size_t length)
{
	if (mismatch_)
		return false;
	for (size_t i = 0; i < length; ++i) {
		if (data[i] != streamByte(seed_, offset_ + i)) {
			mismatch_ = offset_ + i;
			return false;
		}
	}
	offset_ += length;
	return true;
}

std::string TransferResult::describe() const
{
	std::string s = std::to_string(bytes) + " bytes";
	if (eof)
		s += ", eof";
	if (error)
		s += std::string(", error ") + std::strerror(error);
	if (timedOut)
		s += ", timed out";
	return s;
}

TransferResult writeStream(int fd, StreamSource &source, size_t length, int timeoutMs)
{
	TransferResult r;
	int64_t deadline = nowMs() + timeoutMs;
	while (r.bytes < length) {
		std::vector<uint8_t> chunk = source.peek(std::min<size_t>(length - r.bytes, 64 * 1024));
		ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n > 0) {
			source.advance(static_cast<size_t>(n));
			r.bytes += static_cast<size_t>(n);
			continue;
		}
		if (n < 0 && errno != EAGAIN && errno != EINTR) {
			r.error = errno;
			return r;
		}
		if (!waitFor(fd, POLLOUT, deadline)) {
			r.timedOut = true;
			return r;
		}
	}
	return r;
}

TransferResult fillStream(int fd, StreamSource &source, size_t limit)
{
	TransferResult r;
	while (r.bytes < limit) {
		std::vector<uint8_t> chunk = source.peek(std::min<size_t>(limit - r.bytes, 64 * 1024));
		ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			r.error = errno == EAGAIN ? 0 : errno;
			return r;
		}
		source.advance(static_cast<size_t>(n));
		r.bytes += static_cast<size_t>(n);
	}
	return r;
}

TransferResult readStream(int fd, StreamVerifier &verifier, size_t length, int timeoutMs)
{
	TransferResult r;
	int64_t deadline = nowMs() + timeoutMs;
	std::array<uint8_t, 64 * 1024> buffer;
	while (r.bytes < length) {
		ssize_t n = ::recv(fd, buffer.data(), std::min(buffer.size(), length - r.bytes), MSG_DONTWAIT);
		if (n > 0) {
			verifier.verify(buffer.data(), static_cast<size_t>(n));
			r.bytes += static_cast<size_t>(n);
			continue;
		}
		if (n == 0) {
			r.eof = true;
			return r;
		}
		if (errno != EAGAIN && errno != EINTR) {
			r.error = errno;
			return r;
		}
		if (!waitFor(fd, POLLIN, deadline)) {
			r.timedOut = true;
			return r;
		}
	}
	return r;
}

TransferResult readToEnd(int fd, StreamVerifier &verifier, int timeoutMs)
{
	return readStream(fd, verifier, SIZE_MAX, timeoutMs);
}

} // namespace ferry::test
