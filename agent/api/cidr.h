// Cidr: an IPv4 or IPv6 address with a prefix length.
//
// Two uses with different strictness: an allowlist range ("198.51.100.0/24",
// host bits must be zero, so a typo cannot silently widen or move a range)
// and an interface address that moves with a workload ("198.51.100.10/24",
// host bits are the point). Pure value type; no I/O.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"
#include "base/flow.h"

namespace ferry::api {

struct Cidr {
	int family = AF_UNSPEC;
	std::array<uint8_t, 16> address{}; // network order; IPv4 uses the first 4 bytes
	uint8_t prefixLength = 0;

	enum class HostBits { MustBeZero, Allowed };
	// Parses "198.51.100.0/24" or "2001:db8::/32". EINVAL with the text when
	// it does not parse, the prefix is out of range for the family, or host
	// bits are set while they must be zero.
	static Result<Cidr> parse(std::string_view text, HostBits hostBits = HostBits::MustBeZero);

	// Whether `family`/`address` lies inside this range. IPv4 and IPv6 never
	// match each other (an IPv4-mapped IPv6 address is IPv6 here).
	bool contains(int otherFamily, const std::array<uint8_t, 16> &otherAddress) const;
	bool contains(const Endpoint &endpoint) const { return contains(endpoint.family, endpoint.address); }
	// Whether this range covers the whole of `inner`'s address (not its
	// prefix: an interface address 198.51.100.10/24 lies in 198.51.100.0/28).
	bool containsAddressOf(const Cidr &inner) const { return contains(inner.family, inner.address); }

	std::string toString() const;
	friend bool operator==(const Cidr &, const Cidr &) = default;
};

} // namespace ferry::api
