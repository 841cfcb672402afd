#include "stream_session.h"

#include <sys/socket.h>

#include <algorithm>
#include <array>
#include <cerrno>

namespace ferry::demo {

namespace {

constexpr size_t kIoChunk = 256 * 1024;

Direction opposite(Direction d)
{
	return d == Direction::ClientToServer ? Direction::ServerToClient : Direction::ClientToServer;
}

// One scratch buffer for all sessions: the programs are single-threaded
// and no bytes are kept between calls.
std::span<uint8_t> scratch()
{
	static std::array<uint8_t, kIoChunk> buffer;
	return buffer;
}

} // namespace

TokenBucket::TokenBucket(uint64_t bytesPerSecond, Clock::time_point now)
	: rate_(bytesPerSecond),
	  burst_(std::max<double>(static_cast<double>(bytesPerSecond) / 10, kFrameSize)),
	  last_(now)
{
}

void TokenBucket::refill(Clock::time_point now)
{
	if (unlimited() || now <= last_)
		return;
	double seconds = std::chrono::duration<double>(now - last_).count();
	tokens_ = std::min(burst_, tokens_ + seconds * static_cast<double>(rate_));
	last_ = now;
}

uint64_t TokenBucket::available() const
{
	if (unlimited())
		return UINT64_MAX;
	return static_cast<uint64_t>(tokens_);
}

void TokenBucket::spend(uint64_t bytes)
{
	if (!unlimited())
		tokens_ = std::max(0.0, tokens_ - static_cast<double>(bytes));
}

StreamSession::StreamSession(UniqueFd fd, Direction outbound, Hello hello, Position start)
	: fd_(std::move(fd)),
	  outbound_(outbound),
	  hello_(hello),
	  pattern_(hello.seed, outbound),
	  verifier_(hello.seed, opposite(outbound), start.received),
	  sent_(start.sent)
{
}

Result<StreamSession::ReceiveResult> StreamSession::receive(size_t maxBytes)
{
	ReceiveResult result;
	std::span<uint8_t> buffer = scratch();
	while (result.bytes < maxBytes) {
		size_t want = std::min(buffer.size(), maxBytes - result.bytes);
		ssize_t n = ::recv(fd_.get(), buffer.data(), want, MSG_DONTWAIT);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				break;
			return errnoError("recv from demo peer").at("offset", std::to_string(received()));
		}
		if (n == 0) {
			result.endOfStream = true;
			break;
		}
		if (hello_.idle)
			return makeError("data arrived on an idle connection", EPROTO);
		FERRY_TRY(verifier_.consume(buffer.first(static_cast<size_t>(n))));
		result.bytes += static_cast<size_t>(n);
		if (static_cast<size_t>(n) < want)
			break; // the queue is drained; spare the EAGAIN round trip
	}
	return result;
}

Result<StreamSession::SendResult> StreamSession::send(size_t maxBytes)
{
	SendResult result;
	if (hello_.idle)
		return result;
	std::span<uint8_t> buffer = scratch();
	while (result.bytes < maxBytes) {
		size_t want = std::min(buffer.size(), maxBytes - result.bytes);
		pattern_.fill(sent_, buffer.first(want));
		ssize_t n = ::send(fd_.get(), buffer.data(), want, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			if (errno == EAGAIN || errno == EWOULDBLOCK) {
				result.wouldBlock = true;
				break;
			}
			return errnoError("send to demo peer").at("offset", std::to_string(sent_));
		}
		// Only what the kernel accepted counts; the rest is regenerated next
		// time, so nothing unsent lingers in memory across a handoff.
		sent_ += static_cast<uint64_t>(n);
		result.bytes += static_cast<size_t>(n);
		if (static_cast<size_t>(n) < want) {
			result.wouldBlock = true;
			break;
		}
	}
	return result;
}

} // namespace ferry::demo
