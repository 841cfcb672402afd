#include "neighbour_announce.h"

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/if_ether.h>
#include <netinet/in.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include <cstring>
#include <thread>

#include "base/log.h"
#include "base/netns.h"
#include "base/unique_fd.h"

namespace ferry::netlink {

namespace {

FERRY_LOG_CATEGORY(logNetlink, "netlink")

constexpr std::string_view kPhase = "announce";

struct Interface {
	int index = 0;
	MacAddress mac;
};

// Index and MAC of `name` in the current namespace.
Result<Interface> lookUpInterface(std::string_view name)
{
	std::string n(name);
	if (n.empty() || n.size() >= IFNAMSIZ)
		return makeError("'" + n + "' is not a valid interface name", EINVAL);
	UniqueFd fd(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
	if (!fd)
		return errnoError("cannot open a socket to query the interface");
	ifreq req {};
	std::memcpy(req.ifr_name, n.c_str(), n.size());
	if (::ioctl(fd.get(), SIOCGIFINDEX, &req) < 0)
		return errnoError("no interface named '" + n + "' in this namespace");
	Interface out;
	out.index = req.ifr_ifindex;
	if (::ioctl(fd.get(), SIOCGIFHWADDR, &req) < 0)
		return errnoError("cannot read the interface's hardware address");
	if (req.ifr_hwaddr.sa_family != ARPHRD_ETHER)
		return makeError("interface is not Ethernet; ARP and NA announce need an Ethernet link", EAFNOSUPPORT);
	std::memcpy(out.mac.bytes.data(), req.ifr_hwaddr.sa_data, out.mac.bytes.size());
	return out;
}

// A gratuitous ARP *request*: Linux, and most switches and routers, accept
// a request with sender == target as an update; a reply would be ignored by
// stacks that only learn from requests.
Status sendGratuitousArp(const Interface &iface, const ServiceAddress &address, const AnnounceOptions &options)
{
	UniqueFd fd(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC, htons(ETH_P_ARP)));
	if (!fd)
		return errnoError("cannot open an AF_PACKET socket (needs CAP_NET_RAW)");

	ether_arp arp {};
	arp.arp_hrd = htons(ARPHRD_ETHER);
	arp.arp_pro = htons(ETH_P_IP);
	arp.arp_hln = ETH_ALEN;
	arp.arp_pln = 4;
	arp.arp_op = htons(ARPOP_REQUEST);
	std::memcpy(arp.arp_sha, iface.mac.bytes.data(), ETH_ALEN);
	std::memcpy(arp.arp_spa, address.address.data(), 4);
	std::memset(arp.arp_tha, 0, ETH_ALEN);
	std::memcpy(arp.arp_tpa, address.address.data(), 4);

	sockaddr_ll to {};
	to.sll_family = AF_PACKET;
	to.sll_protocol = htons(ETH_P_ARP);
	to.sll_ifindex = iface.index;
	to.sll_halen = ETH_ALEN;
	std::memset(to.sll_addr, 0xff, ETH_ALEN);

	for (int i = 0; i < options.count; ++i) {
		if (i > 0)
			std::this_thread::sleep_for(options.interval);
		if (::sendto(fd.get(), &arp, sizeof(arp), 0, reinterpret_cast<sockaddr *>(&to), sizeof(to)) < 0)
			return errnoError("sending the gratuitous ARP failed").at("frame", std::to_string(i + 1));
	}
	return {};
}

struct NeighbourAdvert {
	nd_neighbor_advert header;
	nd_opt_hdr option;
	uint8_t lladdr[ETH_ALEN];
};
static_assert(sizeof(NeighbourAdvert) == 24 + 8, "NA with one 8-byte option");

Status sendUnsolicitedAdvert(const Interface &iface, const ServiceAddress &address, const AnnounceOptions &options)
{
	UniqueFd fd(::socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_ICMPV6));
	if (!fd)
		return errnoError("cannot open a raw ICMPv6 socket (needs CAP_NET_RAW)");

	// Receivers drop neighbour discovery that did not come from on-link:
	// hop limit must arrive as 255 (RFC 4861 7.1.2).
	int hops = 255;
	if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_MULTICAST_HOPS, &hops, sizeof(hops)) < 0 ||
	    ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_UNICAST_HOPS, &hops, sizeof(hops)) < 0)
		return errnoError("cannot set hop limit 255 on the ICMPv6 socket");
	int index = iface.index;
	if (::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_MULTICAST_IF, &index, sizeof(index)) < 0)
		return errnoError("cannot select the interface for multicast");
	int loop = 0;
	::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_MULTICAST_LOOP, &loop, sizeof(loop));

	// Source address = the target, as the kernel's own unsolicited NA does:
	// some stacks check that an unsolicited NA comes from its target.
	sockaddr_in6 from {};
	from.sin6_family = AF_INET6;
	std::memcpy(&from.sin6_addr, address.address.data(), 16);
	if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&from), sizeof(from)) < 0)
		return errnoError("cannot send from the service address (is it on the interface, and not tentative?)");

	NeighbourAdvert na {};
	na.header.nd_na_type = ND_NEIGHBOR_ADVERT;
	na.header.nd_na_code = 0;
	// Override: replace the MAC peers hold. Not solicited: nobody asked, and
	// a solicited NA to a multicast group is dropped (RFC 4861 7.1.2).
	na.header.nd_na_flags_reserved = ND_NA_FLAG_OVERRIDE;
	std::memcpy(&na.header.nd_na_target, address.address.data(), 16);
	na.option.nd_opt_type = ND_OPT_TARGET_LINKADDR;
	na.option.nd_opt_len = 1; // in units of 8 bytes
	std::memcpy(na.lladdr, iface.mac.bytes.data(), ETH_ALEN);
	// The kernel fills in the ICMPv6 checksum on raw ICMPv6 sockets.

	sockaddr_in6 to {};
	to.sin6_family = AF_INET6;
	::inet_pton(AF_INET6, "ff02::1", &to.sin6_addr);
	to.sin6_scope_id = static_cast<uint32_t>(iface.index);

	for (int i = 0; i < options.count; ++i) {
		if (i > 0)
			std::this_thread::sleep_for(options.interval);
		if (::sendto(fd.get(), &na, sizeof(na), 0, reinterpret_cast<sockaddr *>(&to), sizeof(to)) < 0)
			return errnoError("sending the unsolicited neighbour advertisement failed").at("frame", std::to_string(i + 1));
	}
	return {};
}

} // namespace

Status announceAddress(int netnsFd, std::string_view interface, const ServiceAddress &address,
	const AnnounceOptions &options)
{
	auto locate = [&](Error err) {
		return std::move(err)
			.at("phase", kPhase)
			.at("netns", netnsLabel(netnsFd))
			.at("interface", interface)
			.at("address", address.toString());
	};
	if (options.count < 1 || options.interval.count() < 0)
		return locate(makeError("announce needs count >= 1 and a non-negative interval", EINVAL));
	if (address.family != AF_INET && address.family != AF_INET6)
		return locate(makeError("service address has no family", EAFNOSUPPORT));

	Status s = runInNetns(netnsFd, [&]() -> Status {
		FERRY_TRY_ASSIGN(Interface iface, lookUpInterface(interface));
		if (address.family == AF_INET)
			return sendGratuitousArp(iface, address, options);
		return sendUnsolicitedAdvert(iface, address, options);
	});
	if (!s.ok())
		return locate(std::move(s).error());
	FERRY_LOG(logNetlink, Info) << (address.family == AF_INET ? "gratuitous ARP sent" : "unsolicited NA sent")
		<< kv("address", address.addressString()) << kv("interface", interface)
		<< kv("count", options.count) << kv("netns", netnsLabel(netnsFd));
	return {};
}

} // namespace ferry::netlink
