// Endpoint and FlowId: the addresses that name a TCP connection.
//
// Shared by every component: repair snapshots carry them, the flow lock
// matches them, discovery reports them, the image stream records them.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "error.h"

namespace ferry {

// One end of a flow. `family` is AF_INET or AF_INET6; an IPv4-mapped IPv6
// address (::ffff:a.b.c.d) stays AF_INET6 so a dual-stack socket comes back
// dual-stack.
struct Endpoint {
	int family = AF_UNSPEC;
	std::array<uint8_t, 16> address{}; // network order; IPv4 uses the first 4 bytes
	uint16_t port = 0;                 // host order
	uint32_t scopeId = 0;              // IPv6 link-local scope, else 0

	static Result<Endpoint> fromSockaddr(const sockaddr *sa, socklen_t len);
	// Parses "198.51.100.1:80", "[2001:db8::1]:80" or "[::ffff:198.51.100.1]:80".
	static Result<Endpoint> parse(std::string_view text);
	sockaddr_storage toSockaddr(socklen_t &len) const;
	std::string addressString() const; // without the port
	std::string toString() const;      // "198.51.100.1:80", "[2001:db8::1]:80"
	bool isV4Mapped() const;

	friend bool operator==(const Endpoint &, const Endpoint &) = default;
};

// The 4-tuple that names a connection in errors, logs and lock rules.
struct FlowId {
	Endpoint local;
	Endpoint remote;

	std::string toString() const; // "local->remote"
	friend bool operator==(const FlowId &, const FlowId &) = default;
};

} // namespace ferry
