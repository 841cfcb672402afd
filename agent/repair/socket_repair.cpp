#include "socket_repair.h"

#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <netinet/tcp.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <array>
#include <cstring>
#include <limits>
#include <optional>

#include "base/log.h"
#include "crafted_segment.h"
#include "diag_lookup.h"
#include "kernel_features.h"
#include "tcp_info_ext.h"
#include "state_plan.h"

namespace ferry::repair {

FERRY_LOG_CATEGORY(logRepair, "repair")

namespace {

// TCP_AO_INFO (Linux >= 6.7); Debian 12's headers predate it. The kernel
// accepts a shorter or longer buffer than its struct as long as the tail
// is zero, and answers ENOENT when the socket has no AO keys.
constexpr int kTcpAoInfo = 40;
// Kernel default of mss_cache before a connection exists (TCP_MSS_DEFAULT):
// what TCP_MAXSEG reports for a listener without a user MSS.
constexpr int kDefaultMss = 536;
// Head room over the queued bytes when forcing buffers for a restore: the
// kernel charges skb overhead (truesize) against the buffer, not just data.
constexpr size_t kBufferSlack = 4u << 20;
// How long restore() waits for a crafted segment to be processed. Loopback
// delivery normally completes inside sendto(); this covers a busy softirq.
constexpr int kCraftedWaitMs = 500;

// Where a failure happened, for the Error's context.
struct Where {
	FlowId flow;
	const char *phase = "";
};

std::string currentNetns()
{
	std::array<char, 64> link{};
	ssize_t n = ::readlink("/proc/thread-self/ns/net", link.data(), link.size() - 1);
	return n > 0 ? std::string(link.data(), static_cast<size_t>(n)) : std::string("unknown");
}

Error located(Error e, const Where &where)
{
	e.at("netns", currentNetns());
	e.at("flow", where.flow.toString());
	e.at("phase", where.phase);
	return e;
}

Result<int> getInt(int fd, int level, int name, const char *what)
{
	int value = 0;
	socklen_t length = sizeof(value);
	if (::getsockopt(fd, level, name, &value, &length) < 0)
		return errnoError(std::string("getsockopt ") + what);
	return value;
}

Status setInt(int fd, int level, int name, int value, const char *what)
{
	if (::setsockopt(fd, level, name, &value, sizeof(value)) < 0)
		return errnoError(std::string("setsockopt ") + what);
	return {};
}

Result<tcp_info> tcpInfo(int fd)
{
	tcp_info info{};
	socklen_t length = sizeof(info);
	if (::getsockopt(fd, SOL_TCP, TCP_INFO, &info, &length) < 0)
		return errnoError("getsockopt TCP_INFO");
	return info;
}

Result<int> ioctlInt(int fd, unsigned long request, const char *what)
{
	int value = 0;
	if (::ioctl(fd, request, &value) < 0)
		return errnoError(std::string("ioctl ") + what);
	return value;
}

Status setRepair(int fd, int mode)
{
	if (::setsockopt(fd, SOL_TCP, TCP_REPAIR, &mode, sizeof(mode)) == 0)
		return {};
	if (errno == EPERM)
		return errnoError("TCP_REPAIR refused: ferry needs CAP_NET_ADMIN over the socket's network namespace");
	return errnoError("setsockopt TCP_REPAIR");
}

Status selectQueue(int fd, int queue)
{
	return setInt(fd, SOL_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE");
}

bool isV6Socket(const ConnectionSnapshot &s)
{
	return s.family == AF_INET6 && !s.flow.local.isV4Mapped();
}

// ---- user options ---------------------------------------------------------

// What snapshot() knows about a socket from a census, and how far it may
// trust it (diag_lookup.h, "Validity").
struct Known {
	// The census lists the socket: it is TCP, its names are these (a
	// connected socket's names never change), and the sock_diag facts and
	// the options only the application sets hold while it is frozen.
	const CensusEntry *entry = nullptr;
	// Nothing has reached the socket since the census: its state, buffer
	// sizes and queue memory are still those of the census. Taken on trust
	// when the census has the socket's tcp_info, and proven by the check
	// at the end of the snapshot, which compares the socket's receive
	// counters with the census's.
	bool fresh = false;
	// The BPF socket iterator's record of the socket, used under the same
	// proof as `fresh` (the window clamp and the urgent-data state change
	// when segments arrive); null when the census has none.
	const IteratedSocket *iterated = nullptr;
};

// An int option: from the iterator's record where it proves it (the value
// getsockopt() answers), else from getsockopt().
Result<int> optionInt(int fd, const IteratedSocket *iterated, SocketFact fact, int level, int name, const char *what)
{
	if (iterated) {
		if (std::optional<int> value = iterated->get(fact))
			return *value;
	}
	return getInt(fd, level, name, what);
}

Result<TcpInfoExt> tcpInfoExt(int fd)
{
	TcpInfoExt info;
	info.length = offsetof(TcpInfoExt, length);
	if (::getsockopt(fd, SOL_TCP, TCP_INFO, &info, &info.length) < 0)
		return errnoError("getsockopt TCP_INFO");
	return info;
}

// SO_MEMINFO (Linux >= 4.13) gives both buffer sizes and the memory charged
// to the queues in one call; nullopt on a kernel without it.
std::optional<CensusEntry::Memory> readMemory(int fd)
{
	std::array<uint32_t, SK_MEMINFO_VARS> mem{};
	socklen_t length = sizeof(mem);
	if (::getsockopt(fd, SOL_SOCKET, SO_MEMINFO, mem.data(), &length) < 0 ||
	    length < sizeof(uint32_t) * (SK_MEMINFO_WMEM_QUEUED + 1))
		return std::nullopt;
	return CensusEntry::Memory{mem[SK_MEMINFO_RMEM_ALLOC], mem[SK_MEMINFO_RCVBUF], mem[SK_MEMINFO_SNDBUF],
	                           mem[SK_MEMINFO_WMEM_QUEUED]};
}

// Read before repair mode is turned on: TCP_REPAIR forces sk_reuse and
// changes what TCP_MAXSEG reports. Options that sock_diag echoes come from
// a fresh census entry instead of a getsockopt each. `memory` receives the
// queue memory when it is known (from the census or SO_MEMINFO).
Status readUserOptions(int fd, const ConnectionSnapshot &s, UserOptions &o, const Known &known,
                       const SnapshotOptions &options, std::optional<CensusEntry::Memory> &memory)
{
	const CensusEntry *census = known.fresh ? known.entry : nullptr;
	const IteratedSocket *it = known.iterated;
	FERRY_TRY_ASSIGN(int noDelay, optionInt(fd, it, SocketFact::NoDelay, SOL_TCP, TCP_NODELAY, "TCP_NODELAY"));
	FERRY_TRY_ASSIGN(int cork, optionInt(fd, it, SocketFact::Cork, SOL_TCP, TCP_CORK, "TCP_CORK"));
	FERRY_TRY_ASSIGN(int keepAlive, optionInt(fd, it, SocketFact::KeepAlive, SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE"));
	FERRY_TRY_ASSIGN(o.keepIdle, optionInt(fd, it, SocketFact::KeepIdle, SOL_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE"));
	FERRY_TRY_ASSIGN(o.keepInterval,
	                 optionInt(fd, it, SocketFact::KeepInterval, SOL_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL"));
	FERRY_TRY_ASSIGN(o.keepCount, optionInt(fd, it, SocketFact::KeepCount, SOL_TCP, TCP_KEEPCNT, "TCP_KEEPCNT"));
	FERRY_TRY_ASSIGN(int userTimeout,
	                 optionInt(fd, it, SocketFact::UserTimeout, SOL_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT"));
	FERRY_TRY_ASSIGN(int lowat,
	                 optionInt(fd, it, SocketFact::NotSentLowat, SOL_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT"));
	FERRY_TRY_ASSIGN(o.windowClamp,
	                 optionInt(fd, it, SocketFact::WindowClamp, SOL_TCP, TCP_WINDOW_CLAMP, "TCP_WINDOW_CLAMP"));
	FERRY_TRY_ASSIGN(o.linger2, optionInt(fd, it, SocketFact::Linger2, SOL_TCP, TCP_LINGER2, "TCP_LINGER2"));

	// The sizes SO_SNDBUF/SO_RCVBUF report are sk_sndbuf/sk_rcvbuf, which
	// SO_MEMINFO and the census's SKMEMINFO carry too.
	memory = census && census->memory ? census->memory : readMemory(fd);
	if (memory) {
		o.sendBuffer = static_cast<int>(memory->sendBuffer);
		o.receiveBuffer = static_cast<int>(memory->receiveBuffer);
	} else {
		FERRY_TRY_ASSIGN(o.sendBuffer, getInt(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF"));
		FERRY_TRY_ASSIGN(o.receiveBuffer, getInt(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF"));
	}
	if (census && census->mark) {
		o.mark = *census->mark;
	} else {
		FERRY_TRY_ASSIGN(int mark, getInt(fd, SOL_SOCKET, SO_MARK, "SO_MARK"));
		o.mark = static_cast<uint32_t>(mark);
	}
	if (census && census->priority) {
		o.priority = *census->priority;
	} else {
		FERRY_TRY_ASSIGN(o.priority, getInt(fd, SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY"));
	}
	FERRY_TRY_ASSIGN(int oobInline, optionInt(fd, it, SocketFact::OobInline, SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE"));
	FERRY_TRY_ASSIGN(int reuseAddress,
	                 optionInt(fd, it, SocketFact::ReuseAddress, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR"));
	FERRY_TRY_ASSIGN(int reusePort, optionInt(fd, it, SocketFact::ReusePort, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT"));
	o.noDelay = noDelay != 0;
	o.cork = cork != 0;
	o.keepAlive = keepAlive != 0;
	o.userTimeout = static_cast<uint32_t>(userTimeout);
	o.notSentLowat = static_cast<uint32_t>(lowat);
	o.oobInline = oobInline != 0;
	o.reuseAddress = reuseAddress != 0;
	o.reusePort = reusePort != 0;

	// SO_BUF_LOCK tells whether SO_SNDBUF/SO_RCVBUF were set by the user
	// (the kernel then stops autotuning them). Without it (Linux < 5.14)
	// the sizes are carried as unlocked values.
	// The iterator reads the same bits on any kernel, but only a kernel
	// with SO_BUF_LOCK can set them again on restore.
	if (!options.features || options.features->bufferLock) {
		std::optional<int> locks = it ? it->get(SocketFact::BufferLocks) : std::nullopt;
		if (!locks) {
			int value = 0;
			socklen_t length = sizeof(value);
			if (::getsockopt(fd, SOL_SOCKET, SO_BUF_LOCK, &value, &length) == 0)
				locks = value;
		}
		if (locks) {
			o.sendBufferLocked = (*locks & 1) != 0;    // SOCK_SNDBUF_LOCK
			o.receiveBufferLocked = (*locks & 2) != 0; // SOCK_RCVBUF_LOCK
		}
	}

	if (census && census->congestion[0] != '\0') {
		o.congestion.assign(census->congestion.data());
	} else {
		std::array<char, 32> congestion{};
		socklen_t length = congestion.size() - 1;
		if (::getsockopt(fd, SOL_TCP, TCP_CONGESTION, congestion.data(), &length) < 0)
			return errnoError("getsockopt TCP_CONGESTION");
		o.congestion.assign(congestion.data(), strnlen(congestion.data(), length));
	}

	std::optional<int> lingerOn = it ? it->get(SocketFact::LingerOn) : std::nullopt;
	std::optional<int> lingerSeconds = it ? it->get(SocketFact::LingerSeconds) : std::nullopt;
	if (lingerOn && lingerSeconds) {
		o.lingerOn = *lingerOn != 0;
		o.lingerSeconds = *lingerSeconds;
	} else {
		linger l{};
		socklen_t length = sizeof(l);
		if (::getsockopt(fd, SOL_SOCKET, SO_LINGER, &l, &length) < 0)
			return errnoError("getsockopt SO_LINGER");
		o.lingerOn = l.l_onoff != 0;
		o.lingerSeconds = l.l_linger;
	}

	if (isV6Socket(s)) {
		if (census && census->tclass) {
			o.tos = *census->tclass;
		} else {
			FERRY_TRY_ASSIGN(o.tos, getInt(fd, SOL_IPV6, IPV6_TCLASS, "IPV6_TCLASS"));
		}
	} else if (census && census->tos) {
		o.tos = *census->tos;
	} else {
		FERRY_TRY_ASSIGN(o.tos, getInt(fd, SOL_IP, IP_TOS, "IP_TOS"));
	}
	if (s.family == AF_INET6) {
		if (census && census->v6Only) {
			o.v6Only = *census->v6Only;
		} else {
			FERRY_TRY_ASSIGN(int v6Only, optionInt(fd, it, SocketFact::V6Only, SOL_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY"));
			o.v6Only = v6Only != 0;
		}
	}

	// The user's MSS is visible only before a connection exists; once
	// connected it is folded into the negotiated MSS clamp we carry.
	if (s.state == TcpState::Listen || s.state == TcpState::Close) {
		FERRY_TRY_ASSIGN(int mss, getInt(fd, SOL_TCP, TCP_MAXSEG, "TCP_MAXSEG"));
		o.userMss = mss == kDefaultMss ? 0 : mss;
	}
	return {};
}

Status setBuffers(int fd, int sendBytes, int receiveBytes)
{
	// The FORCE variants ignore net.core.[wr]mem_max (CAP_NET_ADMIN) and
	// double the value like SO_SNDBUF does, so half is passed to land on
	// the exact size read at snapshot time.
	FERRY_TRY(setInt(fd, SOL_SOCKET, SO_SNDBUFFORCE, sendBytes / 2, "SO_SNDBUFFORCE"));
	FERRY_TRY(setInt(fd, SOL_SOCKET, SO_RCVBUFFORCE, receiveBytes / 2, "SO_RCVBUFFORCE"));
	return {};
}

// The buffer size restore() forces for `queued` bytes: the snapshot's own
// when nothing is queued (so that resume() need not set it again).
int forcedSize(int userBytes, size_t queued)
{
	if (queued == 0)
		return userBytes;
	size_t wanted = 2 * queued + kBufferSlack;
	size_t cap = static_cast<size_t>(std::numeric_limits<int>::max() - 1);
	return static_cast<int>(std::min(std::max(static_cast<size_t>(userBytes), wanted), cap));
}

// Options that shape bind, connect and the first segments. In repair mode
// SO_REUSEADDR is left alone: repair forces reuse so that the 4-tuple can be
// bound next to a listener or a TIME_WAIT entry, and resume() restores it.
Status applyEarlyOptions(int fd, const ConnectionSnapshot &s, bool repairing, const FreshSocketDefaults *fresh)
{
	const UserOptions &o = s.options;
	if (s.family == AF_INET6 && !(fresh && o.v6Only == fresh->v6Only))
		FERRY_TRY(setInt(fd, SOL_IPV6, IPV6_V6ONLY, o.v6Only, "IPV6_V6ONLY"));
	if (!repairing)
		FERRY_TRY(setInt(fd, SOL_SOCKET, SO_REUSEADDR, o.reuseAddress, "SO_REUSEADDR"));
	// `fd` is fresh from socket(): reuseport, mark, TOS/TCLASS and priority
	// are all 0 there, so a 0 needs no call (most sockets have them all 0).
	if (o.reusePort)
		FERRY_TRY(setInt(fd, SOL_SOCKET, SO_REUSEPORT, 1, "SO_REUSEPORT"));
	if (o.mark != 0)
		FERRY_TRY(setInt(fd, SOL_SOCKET, SO_MARK, static_cast<int>(o.mark), "SO_MARK"));
	// TOS first: setting IP_TOS also sets the priority from the TOS bits.
	if (o.tos != 0 || o.priority != 0) {
		if (isV6Socket(s)) {
			FERRY_TRY(setInt(fd, SOL_IPV6, IPV6_TCLASS, o.tos, "IPV6_TCLASS"));
		} else {
			FERRY_TRY(setInt(fd, SOL_IP, IP_TOS, o.tos, "IP_TOS"));
		}
		FERRY_TRY(setInt(fd, SOL_SOCKET, SO_PRIORITY, o.priority, "SO_PRIORITY"));
	}
	if (!o.congestion.empty() && !(fresh && o.congestion == fresh->congestion) &&
	    ::setsockopt(fd, SOL_TCP, TCP_CONGESTION, o.congestion.data(), static_cast<socklen_t>(o.congestion.size())) < 0)
		return errnoError("congestion control '" + o.congestion + "' is not available here (setsockopt TCP_CONGESTION)");
	if (o.userMss != 0)
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_MAXSEG, o.userMss, "TCP_MAXSEG"));
	return {};
}

// Options whose setting has side effects on a live connection (pushing
// frames, arming timers) or that repair mode resets; applied once the
// socket is out of repair mode and its queues are complete. `fd` is fresh
// from socket() but for buffers and repair mode, and leaving repair mode
// turned SO_REUSEADDR off: an option already at the snapshot's value needs
// no call (FreshSocketDefaults). `sized`: the buffers have the snapshot's
// sizes already, only their locks are left.
Status applyLateOptions(int fd, const ConnectionSnapshot &s, const FreshSocketDefaults *fresh, bool sized)
{
	const UserOptions &o = s.options;
	if (o.reuseAddress)
		FERRY_TRY(setInt(fd, SOL_SOCKET, SO_REUSEADDR, 1, "SO_REUSEADDR"));
	if (!(fresh && o.keepIdle == fresh->keepIdle))
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_KEEPIDLE, o.keepIdle, "TCP_KEEPIDLE"));
	if (!(fresh && o.keepInterval == fresh->keepInterval))
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_KEEPINTVL, o.keepInterval, "TCP_KEEPINTVL"));
	if (!(fresh && o.keepCount == fresh->keepCount))
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_KEEPCNT, o.keepCount, "TCP_KEEPCNT"));
	if (o.keepAlive)
		FERRY_TRY(setInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, "SO_KEEPALIVE"));
	if (o.userTimeout != 0)
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_USER_TIMEOUT, static_cast<int>(o.userTimeout), "TCP_USER_TIMEOUT"));
	if (o.notSentLowat != 0)
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_NOTSENT_LOWAT, static_cast<int>(o.notSentLowat), "TCP_NOTSENT_LOWAT"));
	if (!(fresh && o.linger2 == fresh->linger2))
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_LINGER2, o.linger2, "TCP_LINGER2"));
	if (o.lingerOn || o.lingerSeconds != 0) {
		linger l{o.lingerOn ? 1 : 0, o.lingerSeconds};
		if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof(l)) < 0)
			return errnoError("setsockopt SO_LINGER");
	}
	if (o.oobInline)
		FERRY_TRY(setInt(fd, SOL_SOCKET, SO_OOBINLINE, 1, "SO_OOBINLINE"));

	// Back to the sizes the source had, then to its locks: a buffer the
	// user never set must keep autotuning, which SO_BUF_LOCK=0 re-enables
	// (setting a size locked it).
	if (!sized)
		FERRY_TRY(setBuffers(fd, o.sendBuffer, o.receiveBuffer));
	int locks = (o.sendBufferLocked ? 1 : 0) | (o.receiveBufferLocked ? 2 : 0);
	if (locks != 3 && ::setsockopt(fd, SOL_SOCKET, SO_BUF_LOCK, &locks, sizeof(locks)) < 0 && errno != ENOPROTOOPT)
		return errnoError("setsockopt SO_BUF_LOCK");
	// After the receive buffer: the clamp is derived from it otherwise.
	if (o.windowClamp != 0)
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_WINDOW_CLAMP, o.windowClamp, "TCP_WINDOW_CLAMP"));
	return {};
}

// ---- queues ----------------------------------------------------------------

// Reads the queue selected with TCP_REPAIR_QUEUE.
Result<std::vector<uint8_t>> peekQueue(int fd, size_t bytes, const char *what)
{
	std::vector<uint8_t> data;
	if (bytes == 0)
		return data;
	// One byte more than expected, so that a queue that grew is noticed.
	data.resize(bytes + 1);
	ssize_t n = ::recv(fd, data.data(), data.size(), MSG_PEEK | MSG_DONTWAIT);
	if (n < 0)
		return errnoError(std::string("cannot read the ") + what);
	if (static_cast<size_t>(n) != bytes)
		return makeError(std::string("the ") + what + " holds " + std::to_string(n) + " bytes, expected " +
		                 std::to_string(bytes) + "; lock the flow before the snapshot", EAGAIN);
	data.resize(bytes);
	return data;
}

Status writeAll(int fd, const std::vector<uint8_t> &data, size_t offset, size_t length, const char *what)
{
	size_t done = 0;
	while (done < length) {
		ssize_t n = ::send(fd, data.data() + offset + done, length - done, MSG_DONTWAIT | MSG_NOSIGNAL);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return errnoError(std::string("cannot restore the ") + what + " at byte " + std::to_string(done) +
			                  " of " + std::to_string(length));
		}
		done += static_cast<size_t>(n);
	}
	return {};
}

// ---- snapshot --------------------------------------------------------------

// The socket's own name; its family is the socket's family (getsockname()
// answers with it even before bind()).
Result<Endpoint> localName(int fd)
{
	sockaddr_storage ss{};
	socklen_t length = sizeof(ss);
	if (::getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &length) < 0)
		return errnoError("getsockname");
	return Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), length);
}

Result<Endpoint> peerName(int fd, int family)
{
	sockaddr_storage ss{};
	// SO_PEERNAME refuses a buffer longer than the address (EINVAL).
	socklen_t length = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
	// SO_PEERNAME, unlike getpeername(), answers for a CLOSE socket that
	// had a peer (the kernel passes peer=2): that is how a reset
	// connection still names its 4-tuple.
	if (::getsockopt(fd, SOL_SOCKET, SO_PEERNAME, &ss, &length) < 0)
		return errnoError("getsockopt SO_PEERNAME");
	return Endpoint::fromSockaddr(reinterpret_cast<sockaddr *>(&ss), length);
}

Status refuseSpecialSockets(int fd, const ConnectionSnapshot &s, bool connected, const Known &known,
                            const SnapshotOptions &options)
{
	// A census entry tells about a ULP (INET_DIAG_ULP_INFO) as it tells
	// about MD5 keys; only the application attaches one.
	bool ulp = known.entry && known.entry->ulp;
	std::array<char, 32> name{};
	if (!known.entry) {
		socklen_t length = name.size() - 1;
		ulp = ::getsockopt(fd, SOL_TCP, TCP_ULP, name.data(), &length) == 0 && length > 0 && name[0] != '\0';
	}
	if (ulp)
		return makeError(std::string("the socket runs the upper layer protocol '") + (name[0] ? name.data() : "?") +
		                 "' (e.g. kTLS), whose state TCP_REPAIR cannot carry", EOPNOTSUPP);

	// A kernel built without TCP-AO cannot have AO keys on any socket.
	if (!options.features || options.features->tcpAo) {
		std::array<uint8_t, 48> ao{};
		socklen_t length = ao.size();
		if (::getsockopt(fd, SOL_TCP, kTcpAoInfo, ao.data(), &length) == 0)
			return makeError("the socket uses TCP-AO keys, which are not carried", EOPNOTSUPP);
	}

	// A CLOSE socket is no longer hashed, so sock_diag cannot see it; it
	// will never send a signed segment again either. A kernel without
	// TCP-MD5 has no keys to find.
	if (s.state != TcpState::Close && (!options.features || options.features->tcpMd5)) {
		DiagFacts facts;
		if (known.entry) {
			facts = DiagFacts{true, known.entry->md5, known.entry->ulp};
		} else {
			FERRY_TRY_ASSIGN(facts, lookupDiag(s.family, s.flow));
		}
		if (connected && !facts.found)
			return makeError("sock_diag does not find the socket: call snapshot() from the socket's network namespace", ENOENT);
		if (facts.md5)
			return makeError("the socket uses TCP-MD5 keys, which are not carried", EOPNOTSUPP);
	}

	// The iterator proves "no urgent data" where the socket's urg_data is
	// 0 (recv(MSG_OOB) then answers EINVAL); anything else is asked.
	bool noUrgentData = known.iterated && known.iterated->get(SocketFact::UrgentData) == 0;
	if (connected && !noUrgentData) {
		char c;
		ssize_t n = ::recv(fd, &c, 1, MSG_OOB | MSG_PEEK | MSG_DONTWAIT);
		if (n == 1 || (n < 0 && errno == EAGAIN))
			return makeError("urgent data is pending (MSG_OOB); the urgent pointer is not carried", EOPNOTSUPP);
	}
	return {};
}

Result<int> pendingError(int fd)
{
	// POLLERR tells without consuming; SO_ERROR then reads (and clears) it.
	pollfd p{fd, 0, 0};
	if (::poll(&p, 1, 0) < 0)
		return errnoError("poll");
	if (!(p.revents & POLLERR))
		return 0;
	return getInt(fd, SOL_SOCKET, SO_ERROR, "SO_ERROR");
}

// Reads a connected socket that is already in repair mode. `before` is the
// tcp_info read before repair mode; `memory` the queue memory, if known.
Status readConnected(int fd, ConnectionSnapshot &s, const StatePlan &plan, const TcpInfoExt &before,
                     const std::optional<CensusEntry::Memory> &memory, const IteratedSocket *iterated, Where &where)
{
	where.phase = "snapshot-queues";
	// Every byte in a queue sits in an skb charged to the socket: no memory
	// charged to the receive queue (rmem_alloc) means nothing unread, none
	// charged to the write and retransmit queues (wmem_queued) means
	// nothing unacknowledged or unsent, and no FIN waiting either. Only
	// then are the ioctls skipped; a nonzero charge (even without data,
	// e.g. an empty skb) takes the exact path. The check at the end proves
	// that nothing arrived meanwhile.
	int inq = 0;
	int outq = 0;
	int notSent = 0;
	if (!memory || memory->receiveAllocated != 0) {
		FERRY_TRY_ASSIGN(inq, ioctlInt(fd, SIOCINQ, "SIOCINQ"));
	}
	if (!memory || memory->sendQueued != 0) {
		FERRY_TRY_ASSIGN(outq, ioctlInt(fd, SIOCOUTQ, "SIOCOUTQ"));
		FERRY_TRY_ASSIGN(notSent, ioctlInt(fd, SIOCOUTQNSD, "SIOCOUTQNSD"));
	}

	// Each queue is selected once, for its sequence number and its bytes.
	// The last selection is left in place: the queue selection matters
	// only to reads and writes in repair mode, and every later user of
	// this socket in repair mode (snapshot again, restore) selects its own
	// queue first; leaving repair mode ignores it.
	FERRY_TRY(selectQueue(fd, TCP_RECV_QUEUE));
	FERRY_TRY_ASSIGN(int receiveSeq, getInt(fd, SOL_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ"));
	s.receiveSeq = static_cast<uint32_t>(receiveSeq);
	FERRY_TRY_ASSIGN(s.receiveQueue, peekQueue(fd, static_cast<size_t>(inq), "receive queue"));

	FERRY_TRY(selectQueue(fd, TCP_SEND_QUEUE));
	FERRY_TRY_ASSIGN(int sendSeq, getInt(fd, SOL_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ"));
	s.sendSeq = static_cast<uint32_t>(sendSeq);
	if (plan.keepsSendQueue) {
		// SIOCOUTQ and SIOCOUTQNSD count our FIN while it is unacked
		// (resp. unsent); the queue itself holds data only.
		bool finUnacked = plan.ourFin && !plan.ourFinAcked;
		size_t data = static_cast<size_t>(outq) - (finUnacked && outq > 0 ? 1 : 0);
		size_t unsent = static_cast<size_t>(notSent) - (finUnacked && notSent > 0 ? 1 : 0);
		if (unsent > data)
			return makeError("send queue counters disagree (SIOCOUTQ " + std::to_string(outq) + ", SIOCOUTQNSD " +
			                 std::to_string(notSent) + ")", EPROTO);
		if (data > 0) {
			FERRY_TRY_ASSIGN(std::vector<uint8_t> queue, peekQueue(fd, data, "send queue"));
			size_t unacked = data - unsent;
			s.sendUnacked.assign(queue.begin(), queue.begin() + static_cast<ptrdiff_t>(unacked));
			s.sendUnsent.assign(queue.begin() + static_cast<ptrdiff_t>(unacked), queue.end());
		}
	}

	where.phase = "snapshot-options";
	// In repair mode TCP_MAXSEG reports the negotiated clamp, which the
	// iterator reads as it is (only the handshake and repair set it).
	FERRY_TRY_ASSIGN(int mss, optionInt(fd, iterated, SocketFact::MssClamp, SOL_TCP, TCP_MAXSEG, "TCP_MAXSEG"));
	NegotiatedOptions &n = s.negotiated;
	const tcp_info &info = before.base;
	n.mssClamp = static_cast<uint32_t>(mss);
	n.sackPermitted = (info.tcpi_options & TCPI_OPT_SACK) != 0;
	n.windowScaling = (info.tcpi_options & TCPI_OPT_WSCALE) != 0;
	if (n.windowScaling) {
		n.sendWindowScale = info.tcpi_snd_wscale;
		n.receiveWindowScale = info.tcpi_rcv_wscale;
	}
	n.timestamps = (info.tcpi_options & TCPI_OPT_TIMESTAMPS) != 0;
	if (n.timestamps) {
		FERRY_TRY_ASSIGN(int ts, getInt(fd, SOL_TCP, TCP_TIMESTAMP, "TCP_TIMESTAMP"));
		s.timestamp = static_cast<uint32_t>(ts);
	}

	tcp_repair_window w{};
	socklen_t length = sizeof(w);
	if (::getsockopt(fd, SOL_TCP, TCP_REPAIR_WINDOW, &w, &length) == 0) {
		s.window = RepairWindow{w.snd_wl1, w.snd_wnd, w.max_window, w.rcv_wnd, w.rcv_wup};
	} else if (errno != ENOPROTOOPT) {
		return errnoError("getsockopt TCP_REPAIR_WINDOW");
	}

	return {};
}

// What the census's tcp_info says, in the shape of the socket's own.
TcpInfoExt infoFromCensus(const CensusEntry &entry)
{
	TcpInfoExt info;
	info.base.tcpi_state = entry.state;
	info.base.tcpi_options = entry.tcpOptions;
	info.base.tcpi_snd_wscale = entry.sendWindowScale & 0xf;
	info.base.tcpi_rcv_wscale = entry.receiveWindowScale & 0xf;
	info.segsIn = entry.segsIn;
	info.bytesReceived = entry.bytesReceived;
	info.length = offsetof(TcpInfoExt, length);
	return info;
}

// The outcome of one attempt: the snapshot, or an error, or "the census
// was out of date for this socket", after which the socket is as it was
// found and the caller reads it again without the census.
struct Attempt {
	std::optional<Result<ConnectionSnapshot>> result;
	bool staleCensus = false;
};

Attempt snapshotAttempt(int fd, const SnapshotOptions &options, Where &where)
{
	ConnectionSnapshot s;
	where.phase = "snapshot-identify";
	Known known;
	if (options.census) {
		uint64_t cookie = 0;
		socklen_t length = sizeof(cookie);
		if (::getsockopt(fd, SOL_SOCKET, SO_COOKIE, &cookie, &length) < 0)
			return {errnoError("getsockopt SO_COOKIE")};
		known.entry = options.census->find(cookie);
	}
	bool hasPeer = false;
	if (known.entry) {
		// The census lists connected TCP sockets only, by cookie.
		s.family = known.entry->family;
		s.flow = known.entry->flow;
		hasPeer = true;
	} else {
		Result<int> protocol = getInt(fd, SOL_SOCKET, SO_PROTOCOL, "SO_PROTOCOL");
		if (!protocol)
			return {std::move(protocol).error()};
		Result<Endpoint> local = localName(fd);
		if (*protocol != IPPROTO_TCP || !local || (local->family != AF_INET && local->family != AF_INET6))
			return {makeError("not a TCP socket over IPv4 or IPv6", EPROTONOSUPPORT)};
		s.family = local->family;
		s.flow.local = *local;
		Result<Endpoint> remote = peerName(fd, s.family);
		hasPeer = remote.ok();
		if (hasPeer)
			s.flow.remote = *remote;
	}
	where.flow = s.flow;

	// The state and negotiated options before repair mode: the census's
	// when it has them (proven current at the end), else the socket's.
	TcpInfoExt info;
	if (known.entry && known.entry->hasInfo && known.entry->hasReceiveCounters) {
		info = infoFromCensus(*known.entry);
		known.fresh = true;
		if (known.entry->iterated)
			known.iterated = &*known.entry->iterated;
	} else {
		Result<TcpInfoExt> read = tcpInfoExt(fd);
		if (!read)
			return {std::move(read).error()};
		info = *read;
	}
	s.state = static_cast<TcpState>(info.base.tcpi_state);
	StatePlan plan = planFor(s.state, hasPeer, 0);
	if (!plan.migratable)
		return {makeError(std::string("cannot migrate a socket in state ") + toString(s.state) + ": " + plan.refusal,
		                  EOPNOTSUPP)};

	where.phase = "snapshot-checks";
	if (Status checked = refuseSpecialSockets(fd, s, plan.connected, known, options); !checked)
		return {std::move(checked).error()};
	where.phase = "snapshot-options";
	std::optional<CensusEntry::Memory> memory;
	if (Status read = readUserOptions(fd, s, s.options, known, options, memory); !read)
		return {std::move(read).error()};

	if (s.state == TcpState::Listen) {
		// tcp_info reports a listener's backlog limit in tcpi_sacked and
		// its accept queue length in tcpi_unacked.
		if (info.base.tcpi_unacked > 0)
			return {makeError(std::to_string(info.base.tcpi_unacked) +
			                          " connections wait in the accept queue; accept them first (they migrate as connections)",
			                  EBUSY)};
		s.bound = true;
		s.backlog = static_cast<int>(info.base.tcpi_sacked);
		return {std::move(s)};
	}
	if (!plan.connected) {
		s.bound = s.flow.local.port != 0;
		return {std::move(s)};
	}

	s.bound = true;
	if (s.state == TcpState::Close) {
		Result<int> error = pendingError(fd);
		if (!error)
			return {std::move(error).error()};
		s.socketError = *error;
		plan = planFor(s.state, true, s.socketError);
		if (s.socketError != 0 && s.socketError != ECONNRESET && s.socketError != EPIPE)
			return {makeError(std::string("the connection ended with error '") + std::strerror(s.socketError) +
			                          "', which a restored socket cannot reproduce (only a reset can be replayed)",
			                  EOPNOTSUPP)};
	}

	where.phase = "snapshot-repair-on";
	if (Status on = setRepair(fd, TCP_REPAIR_ON); !on)
		return {std::move(on).error()};
	Status read = readConnected(fd, s, plan, info, memory, known.iterated, where);

	// Everything read holds together only if nothing reached the socket
	// meanwhile (a socket in repair mode still processes incoming
	// segments). One look at the end, against the look before (the
	// census's or the socket's), covers the whole read: same state, same
	// receive counters.
	// With the census's look, a failed read may also come from the census
	// being out of date (e.g. a queue it said was empty is not), so the
	// check runs then too.
	bool stale = false;
	if (read.ok() || known.fresh) {
		where.phase = "snapshot-check";
		Result<TcpInfoExt> after = tcpInfoExt(fd);
		if (!after) {
			if (read.ok())
				read = std::move(after).error();
		} else if (!after->receivedNothingSince(info)) {
			if (known.fresh) {
				stale = true;
				read = makeError("the census is out of date for this socket", EAGAIN);
			} else if (after->base.tcpi_state != info.base.tcpi_state) {
				read = makeError(std::string("the state changed from ") + toString(s.state) + " to " +
				                         toString(static_cast<TcpState>(after->base.tcpi_state)) +
				                         " while it was read; lock the flow before the snapshot",
				                 EAGAIN);
			} else {
				read = makeError(std::to_string(after->segsIn - info.segsIn) +
				                         " segments arrived while the socket was read; lock the flow before the snapshot",
				                 EAGAIN);
			}
		}
	}
	if (!read.ok()) {
		// Leave the socket as we found it; the original error matters more.
		int off = TCP_REPAIR_OFF_NO_WP;
		::setsockopt(fd, SOL_TCP, TCP_REPAIR, &off, sizeof(off));
		int reuse = s.options.reuseAddress ? 1 : 0;
		::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &reuse, sizeof(reuse));
		Attempt failed{std::move(read).error()};
		failed.staleCensus = stale;
		return failed;
	}
	return {std::move(s)};
}

Result<ConnectionSnapshot> snapshotImpl(int fd, const SnapshotOptions &options, Where &where)
{
	Attempt attempt = snapshotAttempt(fd, options, where);
	if (attempt.staleCensus) {
		// Something reached the socket after the census (it was taken
		// before the lock, or a segment was already on its way): read it
		// again, all of it from the socket.
		SnapshotOptions direct = options;
		direct.census = nullptr;
		attempt = snapshotAttempt(fd, direct, where);
	}
	return std::move(*attempt.result);
}

// ---- restore ---------------------------------------------------------------

// `transparent`: IP(V6)_TRANSPARENT is on already (prepareRestoreSocket()).
Status bindTo(int fd, const ConnectionSnapshot &s, bool connecting, bool transparent)
{
	socklen_t length;
	sockaddr_storage local = s.flow.local.toSockaddr(length);
	if (::bind(fd, reinterpret_cast<sockaddr *>(&local), length) == 0)
		return {};
	if (errno != EADDRNOTAVAIL || transparent)
		return errnoError("bind " + s.flow.local.toString());
	// The address arrives later (address switch). A transparent socket may
	// bind and connect from a foreign address; freebind would allow the
	// bind only, and connect's route lookup would then refuse the source.
	bool v6 = s.family == AF_INET6;
	if (connecting) {
		FERRY_TRY(setInt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, 1, "IP_TRANSPARENT"));
	} else {
		FERRY_TRY(setInt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_FREEBIND : IP_FREEBIND, 1, "IP_FREEBIND"));
	}
	if (::bind(fd, reinterpret_cast<sockaddr *>(&local), length) < 0)
		return errnoError("bind " + s.flow.local.toString() + " (address not configured here)");
	if (!connecting)
		FERRY_TRY(setInt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_FREEBIND : IP_FREEBIND, 0, "IP_FREEBIND"));
	return {};
}

Result<UniqueFd> restoreUnconnected(UniqueFd fd, const ConnectionSnapshot &s, const FreshSocketDefaults *fresh,
                                    Where &where)
{
	where.phase = "restore-options";
	FERRY_TRY(applyEarlyOptions(fd.get(), s, false, fresh));
	// Before listen(): children inherit the buffers and the window scale
	// is chosen from the receive buffer when a SYN arrives.
	FERRY_TRY(setBuffers(fd.get(), s.options.sendBuffer, s.options.receiveBuffer));
	if (s.bound) {
		where.phase = "restore-bind";
		FERRY_TRY(bindTo(fd.get(), s, false, false));
	}
	if (s.state == TcpState::Listen) {
		where.phase = "restore-listen";
		if (::listen(fd.get(), s.backlog) < 0)
			return errnoError("listen");
	}
	where.phase = "restore-options";
	if (s.options.noDelay)
		FERRY_TRY(setInt(fd.get(), SOL_TCP, TCP_NODELAY, 1, "TCP_NODELAY"));
	if (s.options.cork)
		FERRY_TRY(setInt(fd.get(), SOL_TCP, TCP_CORK, 1, "TCP_CORK"));
	FERRY_TRY(applyLateOptions(fd.get(), s, fresh, true));
	return fd;
}

Status queueOurFin(int fd)
{
	// With the send queue selected, the kernel marks the FIN as sent
	// instead of transmitting it; the retransmit timer covers the case
	// where it never reached the peer.
	FERRY_TRY(selectQueue(fd, TCP_SEND_QUEUE));
	if (::shutdown(fd, SHUT_WR) < 0)
		return errnoError("shutdown(SHUT_WR) in repair mode");
	return selectQueue(fd, TCP_NO_QUEUE);
}

Status awaitState(int fd, TcpState expected, const char *after)
{
	for (int waited = 0;; ++waited) {
		FERRY_TRY_ASSIGN(tcp_info info, tcpInfo(fd));
		if (info.tcpi_state == static_cast<uint8_t>(expected))
			return {};
		if (waited >= kCraftedWaitMs) {
			char mark[16];
			std::snprintf(mark, sizeof(mark), "0x%x", kCraftedPacketMark);
			return makeError(std::string("the socket is ") + toString(static_cast<TcpState>(info.tcpi_state)) +
			                 " instead of " + toString(expected) + " after " + after +
			                 "; is the local address configured, and does the flow lock pass mark " + mark + "?",
			                 EPROTO);
		}
		timespec ms{0, 1000000};
		::nanosleep(&ms, nullptr);
	}
}

Status replayHalfClose(int fd, const ConnectionSnapshot &s, const StatePlan &plan, bool deferred)
{
	uint32_t finSeq = plan.ourFin ? 1 : 0;
	uint32_t sendUna = s.sendSeq - static_cast<uint32_t>(s.sendUnacked.size() + s.sendUnsent.size()) - finSeq;
	uint32_t peerFinSeq = s.receiveSeq - (plan.peerFin ? 1 : 0);
	CraftedSegment segment;
	segment.flow = s.flow;
	// The window the peer last advertised, so that accepting the segment
	// leaves snd_wnd as it was.
	uint32_t window = s.window ? s.window->sndWnd >> s.negotiated.sendWindowScale : 0xffff;
	segment.window = static_cast<uint16_t>(std::min<uint32_t>(window, 0xffff));

	auto inject = [&](uint32_t seq, uint32_t ack, uint8_t flags, TcpState expected, const char *what) -> Status {
		segment.seq = seq;
		segment.ack = ack;
		segment.flags = flags;
		FERRY_TRY(injectSegment(segment));
		return awaitState(fd, expected, what);
	};

	if (plan.reset) {
		if (plan.peerFin)
			FERRY_TRY(inject(peerFinSeq, sendUna, kSegmentFin | kSegmentAck, TcpState::CloseWait, "the peer's FIN"));
		return inject(s.receiveSeq, sendUna, kSegmentRst | kSegmentAck, TcpState::Close, "the peer's RST");
	}
	if (plan.ourFin && plan.ourFinFirst && !deferred) {
		FERRY_TRY(queueOurFin(fd));
		FERRY_TRY(awaitState(fd, TcpState::FinWait1, "our FIN"));
	}
	if (plan.peerFin) {
		TcpState expected = plan.ourFin && plan.ourFinFirst && !deferred ? TcpState::Closing : TcpState::CloseWait;
		FERRY_TRY(inject(peerFinSeq, sendUna, kSegmentFin | kSegmentAck, expected, "the peer's FIN"));
	}
	if (plan.ourFin && !plan.ourFinFirst && !deferred) {
		FERRY_TRY(queueOurFin(fd));
		FERRY_TRY(awaitState(fd, TcpState::LastAck, "our FIN"));
	}
	if (plan.ourFinAcked) {
		TcpState expected = plan.peerFin ? TcpState::Close : TcpState::FinWait2;
		FERRY_TRY(inject(s.receiveSeq, s.sendSeq, kSegmentAck, expected, "the ACK of our FIN"));
	}
	return {};
}

// `prepared`: from prepareRestoreSocket(), or empty to make one here.
Result<UniqueFd> restoreImpl(UniqueFd prepared, const ConnectionSnapshot &s, const FreshSocketDefaults *fresh,
                             Where &where)
{
	where.phase = "restore-check";
	StatePlan plan = planFor(s.state, s.flow.remote.family != AF_UNSPEC, s.socketError);
	if (!plan.migratable)
		return makeError(std::string("cannot restore a socket in state ") + toString(s.state) + ": " + plan.refusal, EINVAL);
	if (s.family != AF_INET && s.family != AF_INET6)
		return makeError("snapshot has no valid address family", EINVAL);
	if (!plan.keepsSendQueue && (!s.sendUnacked.empty() || !s.sendUnsent.empty()))
		return makeError("a closed socket's snapshot carries send data", EINVAL);
	if (plan.ourFinAcked && (!s.sendUnacked.empty() || !s.sendUnsent.empty()))
		return makeError("our FIN is acknowledged but data before it is not", EINVAL);

	where.phase = "restore-socket";
	bool transparent = static_cast<bool>(prepared);
	if (transparent && !plan.connected)
		return makeError(std::string("a prepared socket cannot take a ") + toString(s.state) +
		                         " socket: it is for connected states only",
		                 EINVAL);
	UniqueFd fd = transparent ? std::move(prepared) : UniqueFd(::socket(s.family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
	if (!fd)
		return errnoError("socket");
	if (!plan.connected)
		return restoreUnconnected(std::move(fd), s, fresh, where);

	// From here on an early return closes fd in repair mode: silently.
	if (!transparent) {
		where.phase = "restore-repair-on";
		FERRY_TRY(setRepair(fd.get(), TCP_REPAIR_ON));
	}
	where.phase = "restore-options";
	FERRY_TRY(applyEarlyOptions(fd.get(), s, true, fresh));
	// Big queues only fit into big buffers; resume() puts the user's back.
	FERRY_TRY(setBuffers(fd.get(), forcedSize(s.options.sendBuffer, s.sendUnacked.size() + s.sendUnsent.size()),
	                     forcedSize(s.options.receiveBuffer, s.receiveQueue.size())));

	// Sequence numbers can only be set while the socket is CLOSED; they
	// are where the queues start, so the restored queues end exactly at
	// the snapshot's rcv_nxt / write_seq. A FIN occupies one number and
	// is replayed after the queues.
	where.phase = "restore-sequence";
	bool deferred = ourFinDeferred(plan, s.sendUnsent.size());
	uint32_t finSeq = plan.ourFin ? 1 : 0;
	uint32_t receiveStart = s.receiveSeq - static_cast<uint32_t>(s.receiveQueue.size()) - (plan.peerFin ? 1 : 0);
	uint32_t sendStart = s.sendSeq - static_cast<uint32_t>(s.sendUnacked.size() + s.sendUnsent.size()) - finSeq;
	// The send queue stays selected through bind and connect, which do not
	// look at it; the queues below select their own. The last selection
	// is left in place, as snapshot() leaves it: only reads and writes in
	// repair mode look at it, every later one selects its own queue first,
	// and leaving repair mode ignores it.
	FERRY_TRY(selectQueue(fd.get(), TCP_RECV_QUEUE));
	FERRY_TRY(setInt(fd.get(), SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(receiveStart), "TCP_QUEUE_SEQ"));
	FERRY_TRY(selectQueue(fd.get(), TCP_SEND_QUEUE));
	FERRY_TRY(setInt(fd.get(), SOL_TCP, TCP_QUEUE_SEQ, static_cast<int>(sendStart), "TCP_QUEUE_SEQ"));

	// In repair mode connect() sends no SYN: it hashes the 4-tuple and
	// moves the socket straight to ESTABLISHED.
	where.phase = "restore-bind";
	FERRY_TRY(bindTo(fd.get(), s, true, transparent));
	where.phase = "restore-connect";
	socklen_t length;
	sockaddr_storage remote = s.flow.remote.toSockaddr(length);
	if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&remote), length) < 0)
		return errnoError("connect " + s.flow.remote.toString() + " in repair mode");

	// The handshake's options: only valid once ESTABLISHED.
	where.phase = "restore-repair-options";
	const NegotiatedOptions &n = s.negotiated;
	std::array<tcp_repair_opt, 4> opts{};
	size_t count = 0;
	if (n.sackPermitted)
		opts[count++] = {TCPOPT_SACK_PERMITTED, 0};
	if (n.windowScaling)
		opts[count++] = {TCPOPT_WINDOW, static_cast<uint32_t>(n.sendWindowScale) | static_cast<uint32_t>(n.receiveWindowScale) << 16};
	if (n.timestamps)
		opts[count++] = {TCPOPT_TIMESTAMP, 0};
	opts[count++] = {TCPOPT_MAXSEG, n.mssClamp};
	if (::setsockopt(fd.get(), SOL_TCP, TCP_REPAIR_OPTIONS, opts.data(), static_cast<socklen_t>(count * sizeof(tcp_repair_opt))) < 0)
		return errnoError("setsockopt TCP_REPAIR_OPTIONS");
	if (n.timestamps) {
		// The peer drops segments whose TSval goes backwards (PAWS):
		// continue from the value read at snapshot time.
		where.phase = "restore-timestamp";
		FERRY_TRY(setInt(fd.get(), SOL_TCP, TCP_TIMESTAMP, static_cast<int>(s.timestamp), "TCP_TIMESTAMP"));
	}

	where.phase = "restore-receive-queue";
	if (!s.receiveQueue.empty()) {
		FERRY_TRY(selectQueue(fd.get(), TCP_RECV_QUEUE));
		FERRY_TRY(writeAll(fd.get(), s.receiveQueue, 0, s.receiveQueue.size(), "receive queue"));
	}
	// Sent-but-unacked data goes back as sent: the peer may already have
	// it, and retransmission (not first transmission) is what is owed.
	where.phase = "restore-send-queue";
	if (!s.sendUnacked.empty()) {
		FERRY_TRY(selectQueue(fd.get(), TCP_SEND_QUEUE));
		FERRY_TRY(writeAll(fd.get(), s.sendUnacked, 0, s.sendUnacked.size(), "unacknowledged send queue"));
	}

	// The window last: the kernel checks it against rcv_nxt, which the
	// receive queue has just advanced.
	if (s.window) {
		where.phase = "restore-window";
		tcp_repair_window w{s.window->sndWl1, s.window->sndWnd, s.window->maxWindow, s.window->rcvWnd, s.window->rcvWup};
		if (plan.peerFin) {
			// rcv_nxt is one short until the peer's FIN is replayed; keep
			// the right edge of the window where it was.
			w.rcv_wup--;
			w.rcv_wnd++;
		}
		if (::setsockopt(fd.get(), SOL_TCP, TCP_REPAIR_WINDOW, &w, sizeof(w)) < 0)
			return errnoError("setsockopt TCP_REPAIR_WINDOW");
	}

	where.phase = "restore-half-close";
	bool replays = plan.reset || plan.peerFin || plan.ourFinAcked || (plan.ourFin && !deferred);
	if (replays) {
		FERRY_TRY(replayHalfClose(fd.get(), s, plan, deferred));
		FERRY_TRY(awaitState(fd.get(), stateAfterRestore(plan, s.state, deferred), "restore"));
	}
	// Without a replay the state is the one the repair-mode connect() set
	// before it returned (tcp_finish_connect: ESTABLISHED); nothing can
	// have moved it since, as no segment was injected.
	return fd;
}

Status resumeImpl(int fd, const ConnectionSnapshot &s, const FreshSocketDefaults *fresh, Where &where)
{
	StatePlan plan = planFor(s.state, s.flow.remote.family != AF_UNSPEC, s.socketError);
	if (!plan.connected)
		return {};
	// The address is local by now; a transparent socket would keep
	// accepting foreign-address routes, which the source socket never did.
	where.phase = "resume-transparent";
	bool v6 = s.family == AF_INET6;
	FERRY_TRY(setInt(fd, v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, 0, "IP_TRANSPARENT"));

	// Without the window probe TCP_REPAIR_OFF would send: the flow is
	// locked until resume() returns, so the probe, or the peer's answer to
	// it, would be dropped anyway (~1.5 us per socket of the blackout).
	where.phase = "resume-repair-off";
	FERRY_TRY(setRepair(fd, TCP_REPAIR_OFF_NO_WP));

	// Nagle and cork decide how the unsent data is cut into segments, so
	// they come before it.
	// (Both are off on the restored socket.)
	where.phase = "resume-options";
	if (s.options.noDelay)
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_NODELAY, 1, "TCP_NODELAY"));
	if (s.options.cork)
		FERRY_TRY(setInt(fd, SOL_TCP, TCP_CORK, 1, "TCP_CORK"));

	// Never-sent data is written like any application write: the kernel
	// must know it was not sent, or it would wait for an ACK that never
	// comes instead of transmitting it.
	where.phase = "resume-unsent";
	FERRY_TRY(writeAll(fd, s.sendUnsent, 0, s.sendUnsent.size(), "unsent send queue"));
	if (ourFinDeferred(plan, s.sendUnsent.size())) {
		where.phase = "resume-fin";
		if (::shutdown(fd, SHUT_WR) < 0)
			return errnoError("shutdown(SHUT_WR) after the unsent data");
	}
	// restore() forced the buffers to fit the queues; where the snapshot's
	// sizes were large enough, they are in place already.
	where.phase = "resume-options";
	bool sized = forcedSize(s.options.sendBuffer, s.sendUnacked.size() + s.sendUnsent.size()) == s.options.sendBuffer &&
	             forcedSize(s.options.receiveBuffer, s.receiveQueue.size()) == s.options.receiveBuffer;
	return applyLateOptions(fd, s, fresh, sized);
}

} // namespace

Result<ConnectionSnapshot> snapshot(int fd, const SnapshotOptions &options)
{
	Where where;
	Result<ConnectionSnapshot> r = snapshotImpl(fd, options, where);
	if (!r.ok())
		return located(std::move(r).error(), where);
	const ConnectionSnapshot &s = *r;
	FERRY_LOG(logRepair, Debug) << "snapshot" << kv("flow", s.flow.toString()) << kv("state", toString(s.state))
	                            << kv("rcvq", s.receiveQueue.size()) << kv("unacked", s.sendUnacked.size())
	                            << kv("unsent", s.sendUnsent.size());
	return r;
}

Status release(int fd, const ConnectionSnapshot &snap)
{
	Where where{snap.flow, "release"};
	StatePlan plan = planFor(snap.state, snap.flow.remote.family != AF_UNSPEC, snap.socketError);
	if (!plan.connected)
		return {};
	// Leaving repair mode sends a window probe: the peer answers with its
	// current ACK and window, which restarts a stream that stalled.
	Status s = setRepair(fd, TCP_REPAIR_OFF);
	if (s.ok())
		s = setInt(fd, SOL_SOCKET, SO_REUSEADDR, snap.options.reuseAddress, "SO_REUSEADDR");
	if (!s.ok())
		return located(std::move(s).error(), where);
	FERRY_LOG(logRepair, Info) << "released" << kv("flow", snap.flow.toString());
	return {};
}

Status discard(UniqueFd fd)
{
	Result<tcp_info> info = tcpInfo(fd.get());
	if (info.ok() && info->tcpi_state != TCP_LISTEN) {
		// Repair mode makes close() drop the connection without a FIN or
		// RST (tcp_disconnect only records ECONNABORTED locally).
		int on = TCP_REPAIR_ON;
		if (::setsockopt(fd.get(), SOL_TCP, TCP_REPAIR, &on, sizeof(on)) < 0) {
			// Only possible without CAP_NET_ADMIN, which snapshot() and
			// restore() needed too. The fd is closed all the same (the
			// caller gave it up) and the error says what the peer saw.
			Error e = errnoError("cannot enter repair mode; the socket was closed normally (the peer sees a FIN)");
			e.at("phase", "discard");
			fd.reset();
			return e;
		}
	}
	fd.reset();
	return {};
}

Result<FreshSocketDefaults> probeFreshSocketDefaults()
{
	UniqueFd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
	if (!fd)
		return errnoError("socket (probing a fresh socket's options)");
	FreshSocketDefaults d;
	std::array<char, 16> name{};
	socklen_t length = name.size();
	if (::getsockopt(fd.get(), SOL_TCP, TCP_CONGESTION, name.data(), &length) < 0)
		return errnoError("getsockopt TCP_CONGESTION");
	d.congestion.assign(name.data(), strnlen(name.data(), length));
	FERRY_TRY_ASSIGN(d.keepIdle, getInt(fd.get(), SOL_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE"));
	FERRY_TRY_ASSIGN(d.keepInterval, getInt(fd.get(), SOL_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL"));
	FERRY_TRY_ASSIGN(d.keepCount, getInt(fd.get(), SOL_TCP, TCP_KEEPCNT, "TCP_KEEPCNT"));
	FERRY_TRY_ASSIGN(d.linger2, getInt(fd.get(), SOL_TCP, TCP_LINGER2, "TCP_LINGER2"));
	FERRY_TRY_ASSIGN(int v6Only, getInt(fd.get(), SOL_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY"));
	d.v6Only = v6Only != 0;
	return d;
}

Result<UniqueFd> prepareRestoreSocket(int family)
{
	if (family != AF_INET && family != AF_INET6)
		return makeError("a prepared socket needs family inet or inet6", EINVAL);
	UniqueFd fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP));
	if (!fd)
		return errnoError("socket");
	FERRY_TRY(setRepair(fd.get(), TCP_REPAIR_ON));
	bool v6 = family == AF_INET6;
	FERRY_TRY(setInt(fd.get(), v6 ? SOL_IPV6 : SOL_IP, v6 ? IPV6_TRANSPARENT : IP_TRANSPARENT, 1, "IP_TRANSPARENT"));
	return fd;
}

Result<UniqueFd> restore(const ConnectionSnapshot &snap, const FreshSocketDefaults *fresh)
{
	return restore(UniqueFd(), snap, fresh);
}

Result<UniqueFd> restore(UniqueFd prepared, const ConnectionSnapshot &snap, const FreshSocketDefaults *fresh)
{
	Where where{snap.flow, "restore"};
	Result<UniqueFd> r = restoreImpl(std::move(prepared), snap, fresh, where);
	if (!r.ok())
		return located(std::move(r).error(), where);
	FERRY_LOG(logRepair, Debug) << "restored" << kv("flow", snap.flow.toString()) << kv("state", toString(snap.state));
	return r;
}

Status resume(int fd, const ConnectionSnapshot &snap, const FreshSocketDefaults *fresh)
{
	Where where{snap.flow, "resume"};
	Status s = resumeImpl(fd, snap, fresh, where);
	if (!s.ok())
		return located(std::move(s).error(), where);
	FERRY_LOG(logRepair, Debug) << "resumed" << kv("flow", snap.flow.toString());
	return {};
}

} // namespace ferry::repair
