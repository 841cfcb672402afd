// Neighbour announce: after the address switch, tell the segment that the
// service address now lives behind the destination's MAC.
//
//   IPv4: a gratuitous ARP request (sender IP == target IP == the service
//         address, sender MAC == the interface's MAC), broadcast over
//         AF_PACKET. Linux peers update an existing ARP entry from it at once,
//         even inside locktime (arp_process treats it as is_garp); they only
//         create a missing entry when arp_accept allows it.
//   IPv6: an unsolicited neighbour advertisement (RFC 4861 7.2.6): ICMPv6
//         type 136, override flag set, solicited flag clear, to ff02::1, hop
//         limit 255, source = the service address, with a target link-layer
//         address option. Peers that hold an entry replace its MAC (state
//         STALE); peers without one ignore it unless accept_untracked_na.
//   Both: the frames are sourced from the interface's MAC, so every learning
//         bridge on the way moves its forwarding entry to the port the
//         destination sits behind.
//
// Preconditions: the address is already on the interface (addAddress in
// address_switch.h); an IPv6 address must not be tentative (ferry adds it
// with NODAD), since the NA is sent from it. The interface is up.
//
// Frames can be lost, so each is sent `count` times, `interval` apart
// (RFC 5227 recommends two ARP announcements two seconds apart; inside one
// data centre a few hundred milliseconds is usual). The call blocks for
// (count - 1) * interval; the first frame leaves at once, so the blackout
// only waits for the first one: run the call on its own thread if the
// repetitions must not delay commit.
#pragma once

#include <chrono>
#include <string_view>

#include "base/error.h"
#include "netlink/address_switch.h"

namespace ferry::netlink {

struct AnnounceOptions {
	int count = 3;                                 // frames per address, >= 1
	std::chrono::milliseconds interval{200};       // between two frames
};

// Announces `address` on `interface` inside `netnsFd` (borrowed): gratuitous
// ARP for IPv4, unsolicited NA for IPv6. Needs CAP_NET_RAW in the namespace.
Status announceAddress(int netnsFd, std::string_view interface, const ServiceAddress &address,
	const AnnounceOptions &options = {});

} // namespace ferry::netlink
