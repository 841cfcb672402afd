// What no getsockopt tells about a socket, learnt from sock_diag: whether
// it carries TCP-MD5 keys (INET_DIAG_MD5SIG) and whether an upper layer
// protocol runs on it (INET_DIAG_ULP_INFO). The kernel reports both only
// to CAP_NET_ADMIN over the namespace, and only when the request asks for
// INET_DIAG_INFO. Everything here works in the calling thread's network
// namespace.
//
// Two ways to ask:
//   lookupDiag()          one socket, one netlink round trip (a netlink
//                         socket opened and closed per call); for single
//                         use, e.g. a rollback after an agent restart;
//   SocketCensus::take()  every TCP socket of the namespace in one dump,
//                         taken once before a batch of snapshots; each
//                         snapshot then costs a getsockopt(SO_COOKIE) and
//                         a binary search instead of a round trip.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "base/error.h"
#include "base/flow.h"
#include "socket_iterator.h"

namespace ferry::repair {

struct DiagFacts {
	bool found = false; // the kernel knows a socket with this 4-tuple here
	bool md5 = false;   // it has at least one TCP-MD5 key
	bool ulp = false;   // an upper layer protocol is attached (e.g. kTLS)
};

// `family` is the socket's own family (AF_INET6 for IPv4-mapped flows).
// For a listener pass a flow whose remote is unspecified.
Result<DiagFacts> lookupDiag(int family, const FlowId &flow);

// What a census saw of one socket. Besides the sock_diag-only facts it
// carries what the dump reports anyway and a snapshot would otherwise read
// with one syscall each: the socket's names, the options that sock_diag
// echoes (mark, TOS/TCLASS, IPV6_V6ONLY, congestion control), its buffer
// sizes and memory in use, and the receive counters of its tcp_info that
// tell whether anything reached it since.
struct CensusEntry {
	uint64_t cookie = 0;
	int family = AF_UNSPEC; // the socket's own family (AF_INET6 for IPv4-mapped)
	FlowId flow;
	uint8_t state = 0;      // tcpi_state

	// From the socket's tcp_info at census time: what was negotiated, and
	// the receive counters (see TcpInfoExt) that tell whether anything
	// reached the socket since.
	bool hasInfo = false;
	uint8_t tcpOptions = 0;          // tcpi_options
	uint8_t sendWindowScale = 0;     // tcpi_snd_wscale
	uint8_t receiveWindowScale = 0;  // tcpi_rcv_wscale
	bool hasReceiveCounters = false;
	uint32_t segsIn = 0;
	uint64_t bytesReceived = 0;

	bool md5 = false;
	bool ulp = false;
	std::optional<uint32_t> mark;   // SO_MARK (reported to CAP_NET_ADMIN)
	std::optional<int> tos;         // IP_TOS
	std::optional<int> tclass;      // IPV6_TCLASS (AF_INET6 sockets)
	std::optional<bool> v6Only;     // IPV6_V6ONLY (AF_INET6 sockets)
	// SO_PRIORITY when the kernel's INET_DIAG_CLASS_ID answer proves it: it
	// reports the net_cls class id, or the priority when there is none, so
	// only a zero answer is unambiguous (no class id, priority 0).
	std::optional<int> priority;
	std::array<char, 16> congestion{}; // TCP_CONGESTION, empty if not reported

	// SO_MEMINFO: buffer sizes as SO_SNDBUF/SO_RCVBUF report them, and the
	// memory charged to the queues (zero means the queue holds no skb).
	struct Memory {
		uint32_t receiveAllocated = 0; // SK_MEMINFO_RMEM_ALLOC
		uint32_t receiveBuffer = 0;    // SK_MEMINFO_RCVBUF
		uint32_t sendBuffer = 0;       // SK_MEMINFO_SNDBUF
		uint32_t sendQueued = 0;       // SK_MEMINFO_WMEM_QUEUED
	};
	std::optional<Memory> memory;

	// The user options, urgent-data state and MSS clamp the BPF socket
	// iterator read (socket_iterator.h), when the census could run it and
	// the iterator saw the socket in the same state as sock_diag did.
	std::optional<IteratedSocket> iterated;
};

// How a census is taken.
struct CensusOptions {
	// Adds the BPF socket iterator's facts to the entries (one more pass
	// over the namespace). When the iterator is unavailable, or with this
	// off, the census is what it is without BPF and snapshot() reads those
	// options with getsockopt; the snapshots are the same either way.
	bool socketIterator = true;
};

// A point-in-time list of the TCP sockets of one network namespace in the
// states a migration carries (ESTABLISHED, FIN_WAIT1/2, CLOSE_WAIT,
// LAST_ACK, CLOSING; listeners and unconnected sockets are few and are
// looked up one by one), keyed by socket cookie (SO_COOKIE, unique per
// boot, so a socket of another namespace is never mistaken for one of
// this).
//
// Validity. sock_diag facts (TCP-MD5 keys, ULP) and the options only the
// application sets (mark, TOS, V6ONLY, congestion control) hold for as
// long as the application does not touch the socket: take the census after
// the workload is frozen (DESIGN.md phase 2). The buffer sizes and queue
// memory also change when segments arrive; snapshot() uses them only when
// the socket's receive counters (tcp_info segs_in, bytes_received) and
// state are still those of the census, and reads them itself otherwise.
// A socket made after the census is not in it; snapshot() falls back to
// reading everything itself for those.
//
// The BPF pass. Unless CensusOptions says otherwise, the census also runs
// the BPF socket iterator (socket_iterator.h) over the namespace and keeps,
// for each entry, the user options no sock_diag attribute carries; with
// them snapshot() of a listed socket needs no getsockopt for its options.
// When BPF cannot be used (no CAP_BPF/CAP_SYS_ADMIN, no BTF, an old
// kernel) the reason is logged once and the census is as before;
// iterated() tells which.
//
// Requirements: CAP_NET_ADMIN over the namespace (without it the kernel
// leaves out MD5, ULP and mark, and take() refuses rather than report a
// census that would say "no MD5 keys" for every socket).
//
// Cost: take() makes two dumps (AF_INET, AF_INET6). Each walks the
// kernel's whole established hash table (its size is set at boot,
// tcp_ehash_entries), a fixed cost of a few milliseconds, plus about a
// microsecond per socket in the namespace. take(flows) costs about a
// microsecond per flow and nothing fixed. The BPF pass walks the listening
// and established hash tables once more (the iterator has no lookup by
// flow; ~2 ms here) and spends about a microsecond per socket of the
// namespace, migrated or not; the program is loaded once per process. Immutable once taken; may be read
// from several threads.
class SocketCensus {
public:
	// Dumps the calling thread's network namespace. Fails if sock_diag is
	// unavailable (ENOENT: the tcp_diag module is missing) or the caller
	// lacks CAP_NET_ADMIN over the namespace (EPERM).
	static Result<SocketCensus> take(const CensusOptions &options = {});

	// Lists only the sockets of `flows` (each named with its socket's own
	// family: AF_INET6 for IPv4-mapped flows), with exact sock_diag lookups
	// sent hundreds to a write. No table walk: the cost is about a
	// microsecond per flow, whatever else the namespace holds. Use it when
	// the flows are known (discovery listed them), as in a migration. A
	// flow without a socket here, or in a state the census does not list,
	// is left out. Same errors as take().
	static Result<SocketCensus> take(std::span<const FlowId> flows, const CensusOptions &options = {});

	// The entry for the socket with this cookie, or nullptr if the census
	// does not know it (made later, another namespace, or a state the
	// census does not list). Valid as long as the census.
	const CensusEntry *find(uint64_t cookie) const;

	size_t size() const { return entries_.size(); }

	// Whether the BPF socket iterator's pass ran (entries it saw carry
	// `iterated`).
	bool iterated() const { return iterated_; }

private:
	// Runs the BPF pass and attaches its records to the entries.
	void addIterated(const CensusOptions &options);

	std::vector<CensusEntry> entries_; // sorted by cookie
	bool iterated_ = false;
};

} // namespace ferry::repair
