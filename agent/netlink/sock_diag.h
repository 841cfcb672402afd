// Discovery: the TCP sockets of one network namespace, through sock_diag.
//
//   FERRY_TRY_ASSIGN(SockDiag diag, SockDiag::open(netnsFd));
//   SocketFilter filter;
//   filter.localPorts = {8080};
//   filter.states = TcpStateSet{TcpSocketState::Established, TcpSocketState::CloseWait};
//   FERRY_TRY_ASSIGN(std::vector<TcpSocketInfo> sockets, diag.listTcp(filter));
//
// The netlink socket is created inside the target namespace (one
// runInNetns call) and stays bound to it, so later dumps cost no thread or
// setns: sock_diag answers for the namespace of the netlink socket, not of
// the calling thread.
//
// Why raw NETLINK_SOCK_DIAG over libmnl and not libnl-idiag: libnl-idiag
// allocates one refcounted object per socket into a cache and exposes
// neither the socket cookie nor control over the receive buffer; for
// 10,000 sockets we want to decode each message straight into our own
// struct from one reused 64 KiB buffer. libmnl is a thin, allocation-free
// framing helper over the same messages.
//
// Filtering: the state set goes to the kernel (inet_diag_req_v2
// idiag_states), so sockets in other states are never copied out. Local
// ports and remote prefixes are matched in user space: the kernel's
// INET_DIAG_REQ_BYTECODE could do it too, but its auditor makes every
// jump offset a source of EINVAL, and a dump of 10,000 sockets already
// takes only milliseconds (see tests/bench/netlink).
#pragma once

#include <linux/netlink.h>
#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/flow.h"

struct mnl_socket;

namespace ferry::netlink {

// The kernel's TCP state numbers (include/net/tcp_states.h) exactly as
// sock_diag reports them. They equal repair::TcpState's values; netlink
// does not depend on repair, so migration converts with a static_cast.
// NewSynRecv is the kernel's request socket (a half-open connection that
// no file refers to); the dump reports it as SynRecv.
enum class TcpSocketState : uint8_t {
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
	NewSynRecv = 12,
};

// "ESTABLISHED", "FIN_WAIT1", ... as ss(8) spells them; "UNKNOWN" otherwise.
// Not named toString: doctest finds toString by ADL and expects its own
// String type back.
const char *tcpStateName(TcpSocketState state);

// A set of TCP states. Its bit layout is the kernel's idiag_states mask
// (bit n = state n), so it passes to the kernel unchanged.
class TcpStateSet {
public:
	constexpr TcpStateSet() = default; // empty
	constexpr TcpStateSet(std::initializer_list<TcpSocketState> states)
	{
		for (TcpSocketState s : states)
			add(s);
	}
	static constexpr TcpStateSet all()
	{
		TcpStateSet set;
		set.mask_ = kAllMask;
		return set;
	}

	constexpr TcpStateSet &add(TcpSocketState state)
	{
		mask_ |= 1u << static_cast<unsigned>(state);
		return *this;
	}
	constexpr bool contains(TcpSocketState state) const
	{
		return (mask_ >> static_cast<unsigned>(state)) & 1u;
	}
	constexpr bool empty() const { return mask_ == 0; }
	constexpr uint32_t kernelMask() const { return mask_; }

	friend constexpr bool operator==(TcpStateSet, TcpStateSet) = default;

private:
	// States 1..12; bit 0 is unused by the kernel.
	static constexpr uint32_t kAllMask = 0x1ffe;
	uint32_t mask_ = 0;
};

// An address prefix in CIDR form: "198.51.100.0/24", "2001:db8::/32". A
// bare address is a host prefix (/32 or /128).
struct CidrPrefix {
	int family = AF_UNSPEC;
	std::array<uint8_t, 16> address{}; // network order; host bits are zero
	uint8_t length = 0;

	static Result<CidrPrefix> parse(std::string_view text);
	// An IPv4 prefix also contains the IPv4-mapped form (::ffff:a.b.c.d) of
	// its addresses: a dual-stack socket talking to an IPv4 peer reports
	// such an address, and a user who filters on 198.51.100.0/24 means it.
	bool contains(const Endpoint &endpoint) const;
	std::string toString() const;

	friend bool operator==(const CidrPrefix &, const CidrPrefix &) = default;
};

// One TCP socket as sock_diag reports it.
struct TcpSocketInfo {
	// local = the socket's own address. AF_INET6 sockets keep AF_INET6
	// endpoints, also when they carry an IPv4 peer (v4-mapped addresses).
	FlowId flow;
	TcpSocketState state = TcpSocketState::Close;
	// The sockfs inode, as in /proc/PID/fd "socket:[inode]". 0 when no file
	// refers to the socket (TIME_WAIT, request sockets, orphans).
	uint64_t inode = 0;
	// SO_COOKIE: unique for the life of the network namespace, unlike an
	// inode number, which is reused soon after the socket is closed.
	uint64_t cookie = 0;
	// For a connection: bytes received and not read (rcv_nxt - copied_seq)
	// and bytes written and not acknowledged, unsent ones included
	// (write_seq - snd_una). For a listener: the accept queue length and
	// the backlog limit.
	uint32_t receiveQueue = 0;
	uint32_t sendQueue = 0;
	uint32_t uid = 0;
	uint32_t interface = 0; // SO_BINDTODEVICE ifindex, else 0
	// Written and not yet sent once (tcp_info tcpi_notsent_bytes); only
	// with SocketFilter::withTcpInfo. sendQueue - *notSentBytes is the
	// unacknowledged part.
	std::optional<uint32_t> notSentBytes;
};

struct SocketFilter {
	// AF_INET, AF_INET6, or AF_UNSPEC for both dumps. Dual-stack AF_INET6
	// sockets appear only in the AF_INET6 dump.
	int family = AF_UNSPEC;
	// Matched in the kernel.
	TcpStateSet states = TcpStateSet::all();
	// Matched in user space; an empty list matches every socket.
	std::vector<uint16_t> localPorts;
	std::vector<CidrPrefix> remotePrefixes;
	// Asks the kernel for tcp_info too (fills notSentBytes); costs about
	// 250 bytes more per socket in the dump.
	bool withTcpInfo = false;

	// True when `socket` passes every condition above, the kernel's
	// included (sockets from the dump have already passed those).
	bool matches(const TcpSocketInfo &socket) const;
};

namespace detail {
struct MnlSocketCloser {
	void operator()(mnl_socket *socket) const;
};
} // namespace detail

// A NETLINK_SOCK_DIAG socket bound to one network namespace. Move-only;
// usable from any thread, one call at a time.
class SockDiag {
public:
	// Opens the socket inside `netnsFd` (borrowed for the call).
	static Result<SockDiag> open(int netnsFd);
	// Opens it in the calling thread's namespace.
	static Result<SockDiag> openHere();

	// Dumps the TCP sockets that pass `filter`, IPv4 first, in the kernel's
	// hash order. A dump is not a snapshot: sockets that open or close
	// while it runs may be missing or listed.
	Result<std::vector<TcpSocketInfo>> listTcp(const SocketFilter &filter = {});

	// "net:[4026532301]", as in /proc/PID/ns/net; used in error context.
	const std::string &netnsLabel() const { return netnsLabel_; }

private:
	SockDiag(std::unique_ptr<mnl_socket, detail::MnlSocketCloser> socket, std::string netnsLabel);
	Status dumpFamily(uint8_t family, const SocketFilter &filter, std::vector<TcpSocketInfo> &out);

	std::unique_ptr<mnl_socket, detail::MnlSocketCloser> socket_;
	std::string netnsLabel_;
	uint32_t seq_ = 0;
	std::vector<char> buffer_;
};

// One-shot: opens a SockDiag in `netnsFd` and lists once.
Result<std::vector<TcpSocketInfo>> listTcpSockets(int netnsFd, const SocketFilter &filter = {});

namespace detail {
// Decodes one SOCK_DIAG_BY_FAMILY answer (an inet_diag_msg and its
// attributes). Exposed for the unit tests; rejects truncated messages.
Result<TcpSocketInfo> decodeInetDiag(const nlmsghdr *message);
} // namespace detail

} // namespace ferry::netlink
