// FlowLock: keep a set of TCP flows from exchanging packets while their
// sockets are dumped or restored (DESIGN.md, phases 3 and 6).
//
// Call order, for one migration in one network namespace:
//
//   FlowLockPtr lock = makeFlowLock(LockStrategy::DropBothWays);
//   lock->lock(netns, migrationId, flows, craftedMark);   // once
//   ... dump or restore the sockets; inject crafted packets with the mark ...
//   lock->unlock();                                        // commit or abort
//
// A lock is a kernel object, not a process resource: it stays in place if
// the FlowLock is destroyed while locked or the agent crashes, so that no
// packet reaches a half-migrated socket. After a crash the journal names
// the live migrations and sweep() (lock_sweep.h) removes the rest.
//
// The strategies differ in what they do to the flows' packets; every
// strategy uses a table of ferry's own named after the migration (see
// lock_table.h) and never touches other tables.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/flow.h"

namespace ferry::netlock {

enum class LockStrategy {
	// Drop the flows' packets in both directions (CRIU's network lock). The
	// sockets neither receive nor emit; the peer retransmits after an RTO.
	DropBothWays,
	// Drop only what arrives. The locked host may still emit, which is safe
	// once the sockets are in TCP_REPAIR mode (the kernel sends nothing for
	// a repaired socket), and lets a crafted probe or window update through
	// without a mark. Before repair mode is on, the socket may still send
	// ACKs and retransmissions; the state dumped afterwards reflects them.
	DropInbound,
	// Planned, to be compared by the performance work: zero-window freeze
	// (rewrite the window of outgoing segments to 0 so the peer probes
	// instead of timing out), NFQUEUE buffering of inbound segments.
};

// "drop-both-ways", "drop-inbound": names for logs, config and the benchmark.
std::string_view strategyName(LockStrategy strategy);
std::optional<LockStrategy> parseLockStrategy(std::string_view name);

// Destroying a FlowLock closes its netlink socket. After an unlock() the
// kernel makes that close wait for its deferred cleanup of the deleted
// table (an RCU grace period, 10-20 ms here), so destroy the FlowLock off
// the blackout's critical path; unlock() itself does not wait for it.
// A FlowLock has one owner and is not safe for concurrent calls.
class FlowLock {
public:
	virtual ~FlowLock() = default;

	// Installs the lock for `flows` in the network namespace `netns` (a spec
	// as openNetns() takes: a name under /run/netns, a path, "pid:N"), in
	// one nftables transaction: all of it or nothing is installed.
	//
	// `migrationId` names the table (validateMigrationId()). `craftedMark`
	// is the packet mark (SO_MARK) that ferry's own crafted packets carry;
	// packets with exactly that mark pass the lock. It must be nonzero
	// (unmarked packets have mark 0) and used by nothing else in the
	// namespace. Duplicate flows are fine; an empty flow list installs an
	// empty lock. IPv4-mapped IPv6 flows are locked as IPv4.
	//
	// Preconditions: this FlowLock is not locked. Errors: EINVAL for bad
	// input, EEXIST when the namespace already has a table with this
	// migration's name, otherwise what the kernel said; every error names
	// the netns and migration.
	virtual Status lock(std::string_view netns, std::string_view migrationId, std::span<const FlowId> flows,
	                    uint32_t craftedMark) = 0;

	// Removes the table atomically; the flows pass again when it returns.
	// Acts through the netlink socket lock() opened inside the namespace, so
	// it works even if the name under /run/netns went away. Precondition:
	// locked. ENOENT if someone else removed the table; the FlowLock is
	// unlocked afterwards either way.
	virtual Status unlock() = 0;

	virtual bool isLocked() const = 0;
	virtual LockStrategy strategy() const = 0;
};

using FlowLockPtr = std::unique_ptr<FlowLock>;

// The nftables implementation of `strategy`.
FlowLockPtr makeFlowLock(LockStrategy strategy);

} // namespace ferry::netlock
