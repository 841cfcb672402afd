// Conntrack carry-over: the connection-tracking entries of migrated flows
// go with them (DESIGN.md, phase 6), so that a destination firewall of the
// form `ct state established,related accept; drop` keeps accepting them.
//
// Raw ctnetlink (NFNL_SUBSYS_CTNETLINK) over libmnl:
//   readConntrack     IPCTNL_MSG_CT_GET with the flow's tuple, on the source;
//   restoreConntrack  IPCTNL_MSG_CT_NEW on the destination, while the flows
//                     are still locked (before unlock): a packet of the flow
//                     that reached the firewall before its entry would be
//                     judged INVALID or NEW and dropped;
//   removeConntrack   IPCTNL_MSG_CT_DELETE: on the destination when a
//                     migration aborts, on the source after commit (an
//                     ESTABLISHED entry otherwise lingers for days).
//
// Namespaces without conntrack state are normal, not errors: when nothing in
// a namespace uses conntrack (no `ct` rule, no NAT, no stateful iptables
// match), the kernel keeps no entries there and readConntrack reports "no
// entry" for every flow; the same when ctnetlink is not available at all.
//
// Every call takes a borrowed namespace fd and works inside it with
// runInNetns(). Needs CAP_NET_ADMIN in that namespace.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/error.h"
#include "base/flow.h"

namespace ferry::netlink {

// One direction of a tracked TCP connection, as conntrack names it.
// IPv4 tuples use AF_INET endpoints even when the socket was a dual-stack
// AF_INET6 one: conntrack tracks what is on the wire.
struct ConntrackTuple {
	Endpoint source;
	Endpoint destination;

	std::string toString() const; // "src->dst"
	friend bool operator==(const ConntrackTuple &, const ConntrackTuple &) = default;
};

// What ferry carries of one entry. Counters, timestamps, labels, helpers and
// the window-tracking edges are not carried: the kernel picks the window up
// again from the next packet of each direction.
struct ConntrackEntry {
	ConntrackTuple original;       // the direction of the first packet
	ConntrackTuple reply;          // differs from original reversed only under NAT
	uint32_t status = 0;           // IPS_* bits (linux/netfilter/nf_conntrack_common.h)
	uint32_t timeoutSeconds = 0;   // remaining lifetime when read
	uint32_t mark = 0;             // ct mark
	uint16_t zone = 0;             // conntrack zone, 0 = default
	uint8_t tcpState = 0;          // TCP_CONNTRACK_* (ESTABLISHED = 3)
	uint8_t windowScaleOriginal = 0;
	uint8_t windowScaleReply = 0;
	uint8_t tcpFlagsOriginal = 0;  // IP_CT_TCP_FLAG_* per direction
	uint8_t tcpFlagsReply = 0;

	// Source or destination NAT applied: the reply tuple is not the reverse
	// of the original one.
	bool natted() const;

	friend bool operator==(const ConntrackEntry &, const ConntrackEntry &) = default;
};

// The tuple conntrack would see for packets arriving at `flow.local` from
// `flow.remote` (IPv4-mapped addresses become AF_INET). A GET with it finds
// the entry whichever side opened the connection: conntrack hashes both
// directions.
ConntrackTuple inboundTuple(const FlowId &flow);

// Reads the entries of `flows` inside `netnsFd`, looked up in conntrack zone
// `zone`. The result has one slot per flow, in order; a slot is empty when
// the namespace holds no entry for that flow (or tracks nothing at all).
// Fails only when ctnetlink itself errs (permission, a broken reply).
Result<std::vector<std::optional<ConntrackEntry>>> readConntrack(int netnsFd, std::span<const FlowId> flows,
	uint16_t zone = 0);

// Creates `entries` inside `netnsFd` with their tuples, TCP state, window
// scales, SACK/window-scale flags, mark and zone, status
// CONFIRMED|SEEN_REPLY|ASSURED (the kernel sets CONFIRMED itself and accepts
// only these to be set), and the source's remaining timeout (at least
// kMinimumTimeoutSeconds, so the entry outlives the blackout; the first
// packet resets it to the state's timeout anyway).
// An entry that already exists in the destination (a packet of the flow
// was tracked there before) is updated to the carried state instead.
// Refuses NATed entries (EOPNOTSUPP): re-creating the NAT binding is not
// supported. Stops at the first failure; the entries created until then
// stay (removeConntrack rolls them back).
Status restoreConntrack(int netnsFd, std::span<const ConntrackEntry> entries);
inline constexpr uint32_t kMinimumTimeoutSeconds = 120;

// Deletes `entries` inside `netnsFd`; entries that are already gone are not
// an error.
Status removeConntrack(int netnsFd, std::span<const ConntrackEntry> entries);

} // namespace ferry::netlink
