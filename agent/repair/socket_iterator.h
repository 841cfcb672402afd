// SocketIterator: the user options of every TCP socket of a network
// namespace in one pass, from a BPF TCP socket iterator
// (socket_iterator.bpf.c), where snapshot() would otherwise make about
// sixteen getsockopt calls per socket (docs/repair.md, "Performance").
//
// For each full TCP socket of the namespace (listeners and connected
// sockets; TIME_WAIT and request sockets have nothing to migrate) it
// reports, keyed by socket cookie, what getsockopt() answers for
// TCP_NODELAY, TCP_CORK, SO_KEEPALIVE, TCP_KEEPIDLE/INTVL/CNT,
// TCP_USER_TIMEOUT, TCP_NOTSENT_LOWAT, TCP_WINDOW_CLAMP, TCP_LINGER2,
// SO_OOBINLINE, SO_REUSEADDR, SO_REUSEPORT, SO_BUF_LOCK, SO_LINGER and
// IPV6_V6ONLY, plus the urgent-data state and the MSS clamp. Each fact is
// reported only when the program could read it exactly (IteratedSocket::
// get() is empty otherwise): the caller asks getsockopt() for the rest.
//
// Use: SocketCensus takes these facts when it can (diag_lookup.h); nothing
// else needs to call this directly.
//
// Requirements: a kernel with BTF (CONFIG_DEBUG_INFO_BTF), the TCP
// iterator with bpf_getsockopt() (Linux >= 5.15; fields a kernel lacks are
// reported as unknown), and CAP_BPF with CAP_PERFMON, or CAP_SYS_ADMIN.
// Without them load() fails and the census reads the options per socket,
// as it did before.
//
// Validity: a point-in-time view. The options are the application's and
// hold while it is frozen; the window clamp and the urgent-data state also
// change when segments arrive, so snapshot() takes these facts only under
// the census's proof that nothing arrived since (diag_lookup.h, "Validity").
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "base/error.h"

struct bpf_object;
struct bpf_link;

namespace ferry::repair {

enum class SocketFact : uint8_t {
	NoDelay,       // TCP_NODELAY
	Cork,          // TCP_CORK
	KeepAlive,     // SO_KEEPALIVE
	KeepIdle,      // TCP_KEEPIDLE (s)
	KeepInterval,  // TCP_KEEPINTVL (s)
	KeepCount,     // TCP_KEEPCNT
	UserTimeout,   // TCP_USER_TIMEOUT (ms)
	NotSentLowat,  // TCP_NOTSENT_LOWAT
	WindowClamp,   // TCP_WINDOW_CLAMP
	Linger2,       // TCP_LINGER2 (s)
	OobInline,     // SO_OOBINLINE
	ReuseAddress,  // SO_REUSEADDR
	ReusePort,     // SO_REUSEPORT
	BufferLocks,   // SO_BUF_LOCK: 1 send buffer locked, 2 receive buffer locked
	LingerOn,      // SO_LINGER l_onoff
	LingerSeconds, // SO_LINGER l_linger
	V6Only,        // IPV6_V6ONLY (AF_INET6 sockets only)
	UrgentData,    // tp->urg_data: 0 proves that no urgent data is announced or held
	MssClamp,      // what TCP_MAXSEG answers in repair mode (the negotiated clamp)
};
inline constexpr size_t kSocketFactCount = 19;

// One socket as the iterator saw it.
struct IteratedSocket {
	uint64_t cookie = 0;
	int family = AF_UNSPEC;
	uint8_t state = 0; // tcpi_state
	// The kernel's HZ as derived for this socket (socket_iterator.bpf.c);
	// 0 if it could not be, in which case TCP_LINGER2 and a nonzero
	// SO_LINGER time are unknown.
	uint32_t hz = 0;
	uint32_t known = 0; // bit per SocketFact
	std::array<int, kSocketFactCount> values{};

	// What getsockopt() answers for `fact`, if the record proves it.
	std::optional<int> get(SocketFact fact) const
	{
		size_t i = static_cast<size_t>(fact);
		if (!(known & (1u << i)))
			return std::nullopt;
		return values[i];
	}
};

struct BpfObjectDeleter {
	void operator()(bpf_object *object) const;
};
struct BpfLinkDeleter {
	void operator()(bpf_link *link) const;
};

// The loaded program, attached as an iterator. Each read() opens a new
// iteration; the program and its link are released with the object.
// Move-only; read() may be called from several threads at once.
class SocketIterator {
public:
	// Loads and verifies the embedded program and attaches it. Fails with
	// the reason (no BTF, no privilege, a kernel without the TCP iterator).
	static Result<SocketIterator> load();

	// The process's one iterator, loaded at the first call (thread-safe);
	// a failure is logged once (category repair) and returned to every
	// caller. The program is not tied to a namespace: read() walks the
	// namespace of its caller.
	static Result<const SocketIterator *> shared();

	// Walks the calling thread's network namespace (the kernel takes the
	// namespace of the thread that opens the iteration): call it through
	// runInNetns() for another one. Unsorted.
	Result<std::vector<IteratedSocket>> read() const;

private:
	SocketIterator() = default;

	std::unique_ptr<bpf_object, BpfObjectDeleter> object_;
	std::unique_ptr<bpf_link, BpfLinkDeleter> link_; // destroyed first
};

} // namespace ferry::repair
