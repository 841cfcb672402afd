// ConnectionSnapshot: everything ferry carries for one TCP socket.
//
// Plain data, no syscalls: snapshot() in socket_repair.h fills it from a
// socket in repair mode, transport/ turns it into an image record and back,
// and restore() rebuilds a socket from it. Field meanings follow the kernel's
// TCP_REPAIR interface (include/uapi/linux/tcp.h); see docs/repair.md.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/flow.h"

namespace ferry::repair {

using ferry::Endpoint;
using ferry::FlowId;

// Values are the kernel's (include/net/tcp_states.h), so they can be
// compared with tcp_info.tcpi_state and sock_diag directly.
enum class TcpState : uint8_t {
	Established = 1,
	SynSent = 2,
	SynRecv = 3,
	FinWait1 = 4,
	FinWait2 = 5,
	TimeWait = 6,
	Close = 7,
	CloseWait = 8,
	LastAck = 9,
	Listen = 10,
	Closing = 11,
};

// "ESTABLISHED", "FIN_WAIT1", ... as the kernel and ss(8) spell them.
const char *toString(TcpState state);
std::optional<TcpState> tcpStateFromString(std::string_view name);

// TCP_REPAIR_WINDOW (struct tcp_repair_window), kernel >= 4.8.
struct RepairWindow {
	uint32_t sndWl1 = 0;
	uint32_t sndWnd = 0;
	uint32_t maxWindow = 0;
	uint32_t rcvWnd = 0;
	uint32_t rcvWup = 0;

	friend bool operator==(const RepairWindow &, const RepairWindow &) = default;
};

// What was negotiated in the handshake; replayed with TCP_REPAIR_OPTIONS.
struct NegotiatedOptions {
	uint32_t mssClamp = 0;
	bool windowScaling = false;
	uint8_t sendWindowScale = 0;
	uint8_t receiveWindowScale = 0;
	bool sackPermitted = false;
	bool timestamps = false;

	friend bool operator==(const NegotiatedOptions &, const NegotiatedOptions &) = default;
};

// Socket options an application may have set. Each is read on snapshot and
// set again on restore, so that the restored socket behaves the same.
struct UserOptions {
	bool noDelay = false;              // TCP_NODELAY
	bool cork = false;                 // TCP_CORK
	bool keepAlive = false;            // SO_KEEPALIVE
	int keepIdle = 0;                  // TCP_KEEPIDLE (s)
	int keepInterval = 0;              // TCP_KEEPINTVL (s)
	int keepCount = 0;                 // TCP_KEEPCNT
	uint32_t userTimeout = 0;          // TCP_USER_TIMEOUT (ms)
	std::string congestion;            // TCP_CONGESTION
	int userMss = 0;                   // TCP_MAXSEG set by the user, 0 if unset
	uint32_t notSentLowat = 0;         // TCP_NOTSENT_LOWAT, 0 = kernel default
	int windowClamp = 0;               // TCP_WINDOW_CLAMP
	int linger2 = 0;                   // TCP_LINGER2 (s)
	bool lingerOn = false;             // SO_LINGER l_onoff
	int lingerSeconds = 0;             // SO_LINGER l_linger
	int sendBuffer = 0;                // SO_SNDBUF as getsockopt reports it
	int receiveBuffer = 0;             // SO_RCVBUF as getsockopt reports it
	bool sendBufferLocked = false;     // the user set SO_SNDBUF (no autotuning)
	bool receiveBufferLocked = false;  // the user set SO_RCVBUF (no autotuning)
	uint32_t mark = 0;                 // SO_MARK
	int priority = 0;                  // SO_PRIORITY
	int tos = 0;                       // IP_TOS, or IPV6_TCLASS on AF_INET6
	bool oobInline = false;            // SO_OOBINLINE
	bool v6Only = false;               // IPV6_V6ONLY (AF_INET6 only)
	bool reuseAddress = false;         // SO_REUSEADDR
	bool reusePort = false;            // SO_REUSEPORT

	friend bool operator==(const UserOptions &, const UserOptions &) = default;
};

struct ConnectionSnapshot {
	int family = AF_UNSPEC; // the socket's own family
	FlowId flow;            // remote is AF_UNSPEC for listeners and bound-only sockets
	TcpState state = TcpState::Close;
	bool bound = false;     // bind() had happened (listeners, bound-only sockets)
	int backlog = 0;        // listeners only

	// Connected sockets. Sequence numbers are the kernel's TCP_QUEUE_SEQ
	// values at dump time: sendSeq is write_seq (one past the last byte
	// queued), receiveSeq is rcv_nxt (one past the last byte received).
	uint32_t sendSeq = 0;
	uint32_t receiveSeq = 0;
	std::vector<uint8_t> receiveQueue;   // received, not yet read by the app
	std::vector<uint8_t> sendUnacked;    // sent, not yet acknowledged
	std::vector<uint8_t> sendUnsent;     // queued by the app, never sent
	NegotiatedOptions negotiated;
	uint32_t timestamp = 0;              // TCP_TIMESTAMP: current TSval base
	std::optional<RepairWindow> window;  // absent when the kernel lacks TCP_REPAIR_WINDOW
	int socketError = 0;                 // pending SO_ERROR (e.g. ECONNRESET for CLOSE-with-peer)

	UserOptions options;

	size_t queuedBytes() const
	{
		return receiveQueue.size() + sendUnacked.size() + sendUnsent.size();
	}
};

} // namespace ferry::repair
