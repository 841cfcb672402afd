// The workload's end of the handoff socket (docs/workloads.md, "The
// handoff socket"): a SOCK_SEQPACKET unix socket whose path ferry gives in
// FERRY_HANDOFF_SOCKET. One JSON object per packet.
//
// Call order: connect() (sends hello) → wait for fd() to be readable →
// receive() → on Prepare: stop touching the migrated sockets, then
// sendReady() → receive() again for Resume or Exit.
#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/unique_fd.h"

namespace ferry::demo {

struct HandoffRequest {
	enum class Kind { Prepare, Resume, Exit };
	Kind kind = Kind::Prepare;
	std::string migration; // Prepare only
};

// Parses one request packet. Fails (EPROTO) on anything that is not exactly
// one of {"prepare":{"migration":"..."}}, {"resume":{}}, {"exit":{}}.
Result<HandoffRequest> parseHandoffRequest(std::string_view message);

std::string handoffHelloMessage(long pid, std::string_view name);
std::string handoffReadyMessage(std::string_view stateBase64);

class HandoffChannel {
public:
	// Connects to the socket at `path` and sends hello with our pid and `name`.
	static Result<HandoffChannel> connect(const std::string &path, std::string_view name);

	// Non-blocking, close-on-exec; owned by the channel.
	int fd() const { return fd_.get(); }

	// Reads one request; call when fd() is readable. nullopt means ferry
	// closed its end.
	Result<std::optional<HandoffRequest>> receive();

	// Sends `ready` with the blob. A big blob (many connections) does not fit
	// a packet of the default socket buffer size, so this first raises the
	// send buffer to fit it (SO_SNDBUFFORCE when privileged, else SO_SNDBUF).
	// The receiver should size its buffer with MSG_PEEK | MSG_TRUNC.
	Status sendReady(std::string_view stateBase64);

private:
	explicit HandoffChannel(UniqueFd fd) : fd_(std::move(fd)) {}

	UniqueFd fd_;
};

} // namespace ferry::demo
