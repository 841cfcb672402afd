// What ferry's lock table looks like: its name, its comment, and the set
// keys that name locked flows. Pure functions, no netlink: the flow lock
// (flow_lock.h) builds the table from these, and sweep (lock_sweep.h)
// recognises ferry's tables by them.
//
// One table per migration and namespace, family inet:
//
//   table inet ferry_<id> {            comment "ferry migration=<id> created=<UTC>"
//     set flows4 { ipv4_addr . inet_service . ipv4_addr . inet_service }
//     set flows6 { ipv6_addr . inet_service . ipv6_addr . inet_service }
//     chain input  { filter hook input  priority -300 ... }
//     chain output { filter hook output priority -300 ... }
//   }
//
// Set elements are keyed local address . local port . remote address .
// remote port, as the socket sees its flow; the input chain reads the
// packet's daddr . dport . saddr . sport so that one element serves both
// directions.
//
// The ownership rule (used by sweep and removeLock): a table is ferry's lock
// for migration X if and only if
//   - its family is inet, and
//   - its name is "ferry_" + X, where X is a valid migration id, and
//   - its comment parses as a ferry comment naming the same X.
// A table that fails any of these is foreign and is never touched, even if
// its name starts with "ferry_".
#pragma once

#include <array>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/flow.h"

namespace ferry::netlock {

inline constexpr std::string_view kTablePrefix = "ferry_";
// Ids are at most this long, so a UUID fits and the comment stays under
// nft's 128-byte comment limit.
inline constexpr size_t kMaxMigrationIdLength = 64;

inline constexpr const char *kInputChain = "input";
inline constexpr const char *kOutputChain = "output";
inline constexpr const char *kSet4 = "flows4";
inline constexpr const char *kSet6 = "flows6";

// The hook priority of both chains: NF_IP_PRI_RAW (-300). See
// docs/network.md, "Flow lock", for why the drop happens there.
inline constexpr int32_t kChainPriority = -300;

// A migration id is 1..64 characters from [A-Za-z0-9_-]. The limits keep
// the table name a plain nft identifier (no quoting when a human types
// `nft delete table inet ferry_<id>`) and unambiguous to parse back.
// EINVAL with the reason otherwise.
Status validateMigrationId(std::string_view id);

// "ferry_<id>". Precondition: validateMigrationId(id) succeeded.
std::string tableName(std::string_view id);

// The table comment (NFTNL_UDATA_TABLE_COMMENT):
//   "ferry migration=<id> created=2024-05-01T12:00:00Z"
// Precondition: validateMigrationId(id) succeeded.
std::string tableComment(std::string_view id, std::time_t created);

struct TableComment {
	std::string migrationId;
	std::time_t created = 0;
};
// Parses a comment made by tableComment(); nullopt for anything else,
// including a valid-looking comment with an invalid id.
std::optional<TableComment> parseTableComment(std::string_view comment);

// Applies the ownership rule above. Returns the migration id and creation
// time when the table is ferry's, nullopt when it is foreign.
std::optional<TableComment> ferryTableOwner(uint32_t family, std::string_view name, std::string_view comment);

// A flow as it goes into a set: which set, and the key bytes. IPv4 keys are
// 16 bytes, IPv6 keys 40: every field is padded to a 32-bit register as the
// kernel's concatenation does (ports are 2 bytes plus 2 zero bytes).
struct FlowKey {
	int family = AF_UNSPEC; // AF_INET -> flows4, AF_INET6 -> flows6
	std::array<uint8_t, 40> bytes{};
	size_t length = 0;
};
inline constexpr size_t kKeyLength4 = 16;
inline constexpr size_t kKeyLength6 = 40;

// Encodes a flow. An IPv4-mapped IPv6 endpoint (::ffff:a.b.c.d) is encoded
// as IPv4 because that is what travels on the wire. EINVAL, naming the flow,
// when an endpoint has no address family, a port is 0, or the two ends are
// of different families after mapping.
Result<FlowKey> encodeFlowKey(const FlowId &flow);

// The nft datatype of the set keys, so that `nft list` prints elements as
// addresses and ports: ipv4_addr . inet_service . ipv4_addr . inet_service
// (resp. ipv6_addr ...). nft composes concatenated types 6 bits at a time.
uint32_t setKeyType(int family);

} // namespace ferry::netlock
