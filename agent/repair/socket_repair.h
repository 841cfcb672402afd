// Snapshot and restore of one TCP socket with TCP_REPAIR.
//
// Life cycle of a migrated connection (DESIGN.md, phases 4, 6 and 8):
//
//   source                                  destination
//   ------                                  -----------
//   [flow locked]
//   snap = snapshot(fd)     fd in repair    fd2 = restore(snap)    fd2 in repair
//        ... image stream ...                [address up, flow locked]
//   commit:  discard(std::move(fd))         resume(fd2, snap)      fd2 live
//   abort:   release(fd, snap)              discard(std::move(fd2))
//
// Nothing here sends a byte of user data or a FIN/RST to the peer: repair
// mode is exactly that guarantee, and the socket leaves it only in release()
// and resume(). The caller must lock the flow (agent/netlock) before
// snapshot() and until resume(): a socket in repair mode still processes
// incoming segments, so an unlocked peer could change it while it is read.
//
// Every function works on the socket it is given and needs CAP_NET_ADMIN in
// the user namespace owning the socket's network namespace. Functions that
// create sockets or talk to the kernel about addresses (restore(), and the
// TCP-MD5 check inside snapshot()) work in the calling thread's network
// namespace: call them through runInNetns() for another namespace.
//
// Crafted segments. Half-closed and reset connections are rebuilt by making
// the restored socket receive what the peer once sent: a FIN, the ACK of our
// FIN, or a RST. restore() injects these with a raw socket, from the peer's
// address to the socket's own (now local) address, over loopback. They carry
// SO_MARK kCraftedPacketMark so that the flow lock can let them through while
// it drops everything else of the flow. The local address must be configured
// in the namespace when a half-closed or reset socket is restored.
#pragma once

#include <cstdint>
#include <string>

#include "base/error.h"
#include "base/unique_fd.h"
#include "connection_snapshot.h"

namespace ferry::repair {

// SO_MARK of the segments restore() injects ("FERY"). The flow lock accepts
// packets carrying it; see docs/repair.md.
inline constexpr uint32_t kCraftedPacketMark = 0x46455259;

class SocketCensus;    // diag_lookup.h
struct KernelFeatures; // kernel_features.h

// What snapshot() may take as known instead of asking the kernel for each
// socket. Both are borrowed for the call; both are optional, and without
// them snapshot() reads everything itself.
struct SnapshotOptions {
	// A census of the socket's network namespace, taken after the workload
	// froze (diag_lookup.h, "Validity"). For a socket it lists, snapshot()
	// takes the TCP-MD5 and ULP facts, the names and the options that
	// sock_diag echoes from it instead of one getsockopt each and a
	// sock_diag round trip, and need not run in the socket's namespace.
	// When the census ran the BPF socket iterator (SocketCensus::
	// iterated()), the other user options, the urgent-data check and the
	// MSS clamp come from it too, under the same proof as the buffers.
	// Buffer sizes and queue memory are taken from it only while the
	// socket has received nothing since. A socket the census does not list
	// is read as without one.
	const SocketCensus *census = nullptr;
	// The running kernel's features (probeKernelFeatures()). A kernel
	// built without TCP-AO or TCP-MD5 cannot have such keys on any socket,
	// so their checks are skipped; without SO_BUF_LOCK it is not read.
	const KernelFeatures *features = nullptr;
};

// Reads the socket into a snapshot.
//
// Connected sockets (ESTABLISHED, FIN_WAIT1, FIN_WAIT2, CLOSE_WAIT, LAST_ACK,
// CLOSING, and CLOSE with a peer: reset or fully closed) are put in repair
// mode and LEFT in repair mode on success: the socket is frozen and is the
// rollback until release() or discard(). On failure the socket is taken out
// of repair mode again and is as it was (except for a pending SO_ERROR of a
// CLOSE socket, which the kernel clears when it is read).
//
// Listening sockets are read without repair mode (the kernel refuses it for
// listeners); their accept queue must be empty. Sockets that are only bound,
// or neither bound nor connected, are read as they are.
//
// Refused, with an Error naming the flow and the reason: SYN_SENT, SYN_RECV,
// TIME_WAIT, urgent data not yet read, TCP-MD5 or TCP-AO keys, any upper
// layer protocol (TCP_ULP, e.g. kTLS), a listener with connections waiting
// in its accept queue, a socket that is not TCP.
//
// For many sockets, take a SocketCensus once (after the freeze, under the
// lock) and pass it in `options`: it replaces, per socket, a sock_diag
// round trip and about ten getsockopt/ioctl calls. Whatever the census
// says is checked at the end against the socket's own receive counters;
// if anything reached the socket since, it is read again without it.
Result<ConnectionSnapshot> snapshot(int fd, const SnapshotOptions &options = {});

// Rollback on the source: leaves repair mode and re-applies what repair mode
// changed (SO_REUSEADDR). The connection carries on where it stopped.
// `snap` is the snapshot taken from this fd. No-op for listeners and
// unconnected sockets.
Status release(int fd, const ConnectionSnapshot &snap);

// Closes a socket silently: no FIN, no RST reaches the peer, because the
// socket is closed while in repair mode. Used on the source after commit and
// on the destination after an abort. Turns repair mode on first if needed.
// For listeners this is a plain close(): their accept queue was empty at
// snapshot time and the flow lock holds new SYNs.
Status discard(UniqueFd fd);

// What a socket fresh from socket() has in one network namespace, for the
// options that follow the namespace's sysctls. restore() and resume() leave
// an option alone when the snapshot holds exactly the value the socket has
// already: with these known, a typical connection needs four calls at
// resume instead of seventeen. The options every fresh socket has off
// (keepalive, user timeout, lingering, Nagle, cork, ...) are skipped when
// off without a probe.
struct FreshSocketDefaults {
	std::string congestion; // TCP_CONGESTION: net.ipv4.tcp_congestion_control
	int keepIdle = 0;       // TCP_KEEPIDLE: net.ipv4.tcp_keepalive_time
	int keepInterval = 0;   // TCP_KEEPINTVL: net.ipv4.tcp_keepalive_intvl
	int keepCount = 0;      // TCP_KEEPCNT: net.ipv4.tcp_keepalive_probes
	int linger2 = 0;        // TCP_LINGER2: net.ipv4.tcp_fin_timeout
	bool v6Only = false;    // IPV6_V6ONLY: net.ipv6.bindv6only
};

// Reads them from a throw-away socket in the calling thread's namespace.
// Valid for sockets created there while the sysctls stay as they are.
Result<FreshSocketDefaults> probeFreshSocketDefaults();

// Rebuilds the socket in the calling thread's network namespace, in the
// order the kernel requires, and returns it still in repair mode (connected
// states) or ready (listeners, bound sockets). The unsent part of the send
// queue and the options that must follow repair mode are applied by
// resume(). Binding works before the address is configured here (the
// socket is bound transparently), but half-closed and reset states need the
// local address configured (see "Crafted segments" above).
// `fresh` (borrowed, optional) must have been probed in this namespace;
// without it every option is set.
// On failure nothing is left behind: the partial socket is closed in repair
// mode.
Result<UniqueFd> restore(const ConnectionSnapshot &snap, const FreshSocketDefaults *fresh = nullptr);

// A socket made ahead of its snapshot, so that creating it stays out of the
// blackout: socket(), repair mode and IP(V6)_TRANSPARENT (the address is not
// configured here yet), in the calling thread's network namespace.
// Closing it unused sends nothing.
Result<UniqueFd> prepareRestoreSocket(int family);

// restore() into a socket from prepareRestoreSocket(snap.family), created
// in the same namespace and not used since. Only for connected states
// (those with a remote endpoint); EINVAL otherwise. `prepared` is consumed,
// also on failure.
Result<UniqueFd> restore(UniqueFd prepared, const ConnectionSnapshot &snap, const FreshSocketDefaults *fresh = nullptr);

// Commit on the destination: leaves repair mode (without the window probe
// the kernel could send: the flow is still locked), queues the unsent
// data, replays a FIN that had not been sent yet, then sets the options that
// must follow repair mode (SO_REUSEADDR, buffers and their locks, Nagle/cork,
// keepalive, timeouts, lingering). `fd` must come from restore(snap), with
// the same `fresh` (or none).
Status resume(int fd, const ConnectionSnapshot &snap, const FreshSocketDefaults *fresh = nullptr);

} // namespace ferry::repair
