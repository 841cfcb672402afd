// Address switch: the service address leaves the source namespace and comes
// up in the destination namespace (DESIGN.md, phase 7), over rtnetlink with
// libnl-route.
//
// Every function takes a borrowed namespace fd (openNetns()) and does its
// netlink work inside that namespace with runInNetns(); the caller's own
// namespace never changes. Errors name the address, the interface and the
// namespace ("net:[inode]", as /proc/PID/ns/net and lsns(8) show it).
//
// The order the migration uses, and why:
//   1. removeAddress(source): the source stops answering for the address.
//      The source's sockets stay in repair mode, so losing the address does
//      not reset them.
//   2. optionally releaseInterfaceMac(source) + setInterfaceMac(destination)
//      (see docs/network.md, "Address switch and announce", for when).
//   3. addAddress(destination): IPv6 is added with IFA_F_NODAD, so it is
//      usable at once instead of tentative for a DAD round.
//   4. announceAddress() (neighbour_announce.h) tells peers and switches.
//
// Matching is exact: an address is the address AND its prefix length AND
// the interface. A request that matches nothing fails and removes nothing;
// it never falls back to "the same address with another prefix".
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/error.h"

namespace ferry::netlink {

// An address with its prefix length, as `ip addr` shows it.
struct ServiceAddress {
	int family = AF_UNSPEC;            // AF_INET or AF_INET6
	std::array<uint8_t, 16> address{}; // network order; IPv4 uses the first 4 bytes
	uint8_t prefixLength = 0;

	// Parses "198.51.100.10/24" or "2001:db8::10/64". The prefix is required:
	// guessing /32 or /128 would create a different address than the source had.
	static Result<ServiceAddress> parse(std::string_view cidr);
	std::string addressString() const; // "198.51.100.10"
	std::string toString() const;      // "198.51.100.10/24"
	size_t addressLength() const { return family == AF_INET ? 4 : 16; }

	friend bool operator==(const ServiceAddress &, const ServiceAddress &) = default;
};

// An Ethernet hardware address.
struct MacAddress {
	std::array<uint8_t, 6> bytes{};

	static Result<MacAddress> parse(std::string_view text); // "02:00:5e:10:00:01"
	std::string toString() const;                           // lower case, colon separated

	friend bool operator==(const MacAddress &, const MacAddress &) = default;
};

// "net:[4026532001]" for error context and logs; "net:[?]" if fstat fails.
std::string netnsLabel(int netnsFd);

// Adds `address` to `interface` inside `netnsFd`.
// Fails with EEXIST (and adds nothing) if the address is already present in
// that namespace on any interface or with any prefix length: a service
// address that exists twice would answer from two places. Fails with ENODEV
// if the interface does not exist. IPv6 addresses get IFA_F_NODAD.
Status addAddress(int netnsFd, std::string_view interface, const ServiceAddress &address);

// Removes exactly `address` (same prefix length) from `interface` inside
// `netnsFd`. Fails with EADDRNOTAVAIL, and removes nothing, if there is no
// such address; the message says where the address was found instead, if
// anywhere (other prefix, other interface).
// Refuses (EBUSY) to remove an IPv4 primary address that has secondaries in
// the same subnet while promote_secondaries is off on the interface: the
// kernel would delete those secondaries with it.
Status removeAddress(int netnsFd, std::string_view interface, const ServiceAddress &address);

// True if exactly this address (same prefix) is on `interface`.
Result<bool> hasAddress(int netnsFd, std::string_view interface, const ServiceAddress &address);

// The interface's current hardware address.
Result<MacAddress> interfaceMac(int netnsFd, std::string_view interface);

// Sets the interface's hardware address. Works while the link is up on
// devices that support live address change (veth, bridge, macvlan...);
// otherwise the kernel's EBUSY is returned: ferry does not take the link
// down, because that would flush its IPv6 addresses.
Status setInterfaceMac(int netnsFd, std::string_view interface, const MacAddress &mac);

// Gives up the interface's hardware address so that another host can take
// it: sets a fresh random, locally administered unicast address and returns
// the old one. Two ports with one MAC on the same segment would make the
// switch flap between them, so the source must let go first.
Result<MacAddress> releaseInterfaceMac(int netnsFd, std::string_view interface);

} // namespace ferry::netlink
