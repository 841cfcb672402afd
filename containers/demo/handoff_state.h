// The demo server's state blob: what a new server process needs to carry
// on the old one's streams after a native handoff (docs/workloads.md).
//
// The old server builds it at its safe point (after `prepare`, having
// stopped touching its sockets) and sends it base64-encoded in `ready`;
// ferry hands it to the new process in FERRY_MANIFEST's "state". Inside the
// base64 is JSON:
//   {"version":1,
//    "listeners":["198.51.100.10:7000"],
//    "connections":[{"local":"198.51.100.10:7000","remote":"198.51.100.20:41234",
//                    "seed":123,"idle":false,"sent":4096,"received":8192}]}
// A connection whose hello had not arrived yet has no "seed" (the old
// process read nothing from it; the new one starts it from scratch).
// Connections are keyed by their (local, remote) addresses because that is
// what survives the move: fd numbers do not.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "base/flow.h"

namespace ferry::demo {

struct ConnectionState {
	FlowId flow;
	// Empty while the connection's hello had not been read.
	std::optional<uint64_t> seed;
	bool idle = false;
	uint64_t sent = 0;     // stream bytes the old process wrote to the socket
	uint64_t received = 0; // stream bytes it read and verified

	friend bool operator==(const ConnectionState &, const ConnectionState &) = default;
};

struct HandoffState {
	static constexpr int kVersion = 1;

	std::vector<Endpoint> listeners;
	std::vector<ConnectionState> connections;

	// The connection with exactly this (local, remote), or nullptr. Linear:
	// index the list yourself for many lookups.
	const ConnectionState *find(const FlowId &flow) const;

	friend bool operator==(const HandoffState &, const HandoffState &) = default;
};

// The same endpoint with an IPv4-mapped IPv6 address (::ffff:a.b.c.d)
// written as IPv4: the kernel may report a dual-stack socket's peer either
// way, and both name one endpoint.
Endpoint canonicalEndpoint(Endpoint e);
// A compact map key for a flow (binary, not for display); equal for flows
// whose canonical endpoints are equal.
std::string flowKey(const FlowId &flow);

// JSON, then base64 (the form that travels in `ready` and the manifest).
std::string encodeHandoffState(const HandoffState &state);
// The inverse. An empty blob is an empty state. Errors (EINVAL) name the
// field that is wrong, e.g. "connections[2].sent".
Result<HandoffState> decodeHandoffState(std::string_view base64);

// Standard base64 (RFC 4648, with padding).
std::string encodeBase64(std::span<const uint8_t> data);
// Rejects characters outside the alphabet, bad padding and bad lengths.
Result<std::vector<uint8_t>> decodeBase64(std::string_view text);

} // namespace ferry::demo
