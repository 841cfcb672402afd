#include "address_switch.h"

#include <arpa/inet.h>
#include <linux/if_addr.h>
#include <net/if.h>
#include <sys/random.h>
#include <sys/stat.h>

#include <netlink/errno.h>
#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <vector>

#include "base/log.h"
#include "base/netns.h"

namespace ferry::netlink {

namespace {

FERRY_LOG_CATEGORY(logNetlink, "netlink")

constexpr std::string_view kPhase = "address-switch";

struct NlSocketDeleter {
	void operator()(nl_sock *s) const { nl_socket_free(s); }
};
struct NlCacheDeleter {
	void operator()(nl_cache *c) const { nl_cache_free(c); }
};
struct NlAddrDeleter {
	void operator()(nl_addr *a) const { nl_addr_put(a); }
};
struct RtnlAddrDeleter {
	void operator()(rtnl_addr *a) const { rtnl_addr_put(a); }
};
struct RtnlLinkDeleter {
	void operator()(rtnl_link *l) const { rtnl_link_put(l); }
};
using NlSocketPtr = std::unique_ptr<nl_sock, NlSocketDeleter>;
using NlCachePtr = std::unique_ptr<nl_cache, NlCacheDeleter>;
using NlAddrPtr = std::unique_ptr<nl_addr, NlAddrDeleter>;
using RtnlAddrPtr = std::unique_ptr<rtnl_addr, RtnlAddrDeleter>;
using RtnlLinkPtr = std::unique_ptr<rtnl_link, RtnlLinkDeleter>;

// libnl reports its own NLE_* codes; Error::code is an errno, so that
// callers can test for EEXIST or ENODEV without knowing libnl.
int errnoFromNl(int nlError)
{
	switch (nlError < 0 ? -nlError : nlError) {
	case NLE_EXIST:
		return EEXIST;
	case NLE_NOADDR:
		return EADDRNOTAVAIL;
	case NLE_NODEV:
		return ENODEV;
	case NLE_OBJ_NOTFOUND:
		return ENOENT;
	case NLE_PERM:
		return EPERM;
	case NLE_NOACCESS:
		return EACCES;
	case NLE_NOMEM:
		return ENOMEM;
	case NLE_BUSY:
		return EBUSY;
	case NLE_AGAIN:
		return EAGAIN;
	case NLE_OPNOTSUPP:
		return EOPNOTSUPP;
	case NLE_AF_NOSUPPORT:
		return EAFNOSUPPORT;
	case NLE_RANGE:
		return ERANGE;
	default:
		return EIO;
	}
}

Error nlError(int nlCode, std::string what)
{
	return makeError(std::move(what) + " (" + nl_geterror(nlCode) + ")", errnoFromNl(nlCode));
}

Result<NlSocketPtr> connectRoute()
{
	NlSocketPtr sock(nl_socket_alloc());
	if (!sock)
		return makeError("cannot allocate a netlink socket", ENOMEM);
	int err = nl_connect(sock.get(), NETLINK_ROUTE);
	if (err < 0)
		return nlError(err, "cannot open rtnetlink");
	return sock;
}

// Looks the interface up by name in the current namespace.
Result<RtnlLinkPtr> findLink(nl_sock *sock, std::string_view interface)
{
	std::string name(interface);
	if (name.empty() || name.size() >= IFNAMSIZ)
		return makeError("'" + name + "' is not a valid interface name", EINVAL);
	rtnl_link *link = nullptr;
	int err = rtnl_link_get_kernel(sock, 0, name.c_str(), &link);
	if (err < 0) {
		// The kernel answers ENODEV for an unknown name; libnl maps it to
		// NLE_OBJ_NOTFOUND or NLE_NODEV depending on the version.
		int code = errnoFromNl(err);
		if (code == ENOENT)
			code = ENODEV;
		return makeError("no interface named '" + name + "' in this namespace", code);
	}
	return RtnlLinkPtr(link);
}

std::string ifName(int ifindex)
{
	char buffer[IF_NAMESIZE] = {};
	if (::if_indextoname(static_cast<unsigned>(ifindex), buffer) == nullptr)
		return "ifindex " + std::to_string(ifindex);
	return buffer;
}

// One address as the kernel reported it.
struct KernelAddress {
	ServiceAddress address;
	int ifindex = 0;
	uint32_t flags = 0;
};

Result<std::vector<KernelAddress>> listAddresses(nl_sock *sock, int family)
{
	nl_cache *raw = nullptr;
	int err = rtnl_addr_alloc_cache(sock, &raw);
	if (err < 0)
		return nlError(err, "cannot list addresses");
	NlCachePtr cache(raw);
	std::vector<KernelAddress> out;
	for (nl_object *o = nl_cache_get_first(cache.get()); o; o = nl_cache_get_next(o)) {
		auto *a = reinterpret_cast<rtnl_addr *>(o);
		if (rtnl_addr_get_family(a) != family)
			continue;
		nl_addr *local = rtnl_addr_get_local(a);
		if (!local || nl_addr_get_family(local) != family)
			continue;
		KernelAddress k;
		k.address.family = family;
		size_t len = std::min<size_t>(nl_addr_get_len(local), k.address.address.size());
		std::memcpy(k.address.address.data(), nl_addr_get_binary_addr(local), len);
		k.address.prefixLength = static_cast<uint8_t>(rtnl_addr_get_prefixlen(a));
		k.ifindex = rtnl_addr_get_ifindex(a);
		k.flags = rtnl_addr_get_flags(a);
		out.push_back(k);
	}
	return out;
}

bool sameAddress(const ServiceAddress &a, const ServiceAddress &b)
{
	return a.family == b.family &&
		std::memcmp(a.address.data(), b.address.data(), a.addressLength()) == 0;
}

bool inSubnet(const ServiceAddress &a, const ServiceAddress &subnet)
{
	if (a.family != subnet.family)
		return false;
	unsigned bits = subnet.prefixLength;
	for (size_t i = 0; i < subnet.addressLength() && bits > 0; ++i) {
		unsigned take = bits >= 8 ? 8 : bits;
		uint8_t mask = static_cast<uint8_t>(0xff00u >> take);
		if ((a.address[i] & mask) != (subnet.address[i] & mask))
			return false;
		bits -= take;
	}
	return true;
}

Result<RtnlAddrPtr> buildAddress(int ifindex, const ServiceAddress &address)
{
	RtnlAddrPtr a(rtnl_addr_alloc());
	if (!a)
		return makeError("cannot allocate an address object", ENOMEM);
	NlAddrPtr local(nl_addr_build(address.family, address.address.data(), address.addressLength()));
	if (!local)
		return makeError("cannot allocate a netlink address", ENOMEM);
	nl_addr_set_prefixlen(local.get(), address.prefixLength);
	rtnl_addr_set_ifindex(a.get(), ifindex);
	rtnl_addr_set_family(a.get(), address.family);
	int err = rtnl_addr_set_local(a.get(), local.get());
	if (err < 0)
		return nlError(err, "cannot build the address request");
	rtnl_addr_set_prefixlen(a.get(), address.prefixLength);
	return a;
}

bool readSysctlFlag(const std::string &path)
{
	std::ifstream in(path);
	int value = 0;
	return (in >> value) && value != 0;
}

// The kernel ORs the "all" and per-interface settings (IN_DEV_ORCONF).
bool promoteSecondaries(const std::string &interface)
{
	return readSysctlFlag("/proc/sys/net/ipv4/conf/all/promote_secondaries") ||
		readSysctlFlag("/proc/sys/net/ipv4/conf/" + interface + "/promote_secondaries");
}

Error located(Error err, int netnsFd, std::string_view interface, const ServiceAddress &address)
{
	return std::move(err)
		.at("phase", kPhase)
		.at("netns", netnsLabel(netnsFd))
		.at("interface", interface)
		.at("address", address.toString());
}

Status checkFamily(const ServiceAddress &address)
{
	if (address.family != AF_INET && address.family != AF_INET6)
		return makeError("service address has no family (AF_INET or AF_INET6 expected)", EAFNOSUPPORT);
	unsigned maxPrefix = address.family == AF_INET ? 32 : 128;
	if (address.prefixLength > maxPrefix)
		return makeError("prefix length /" + std::to_string(address.prefixLength) + " is too long", EINVAL);
	return {};
}

std::string hex2(uint8_t b)
{
	char buffer[3];
	std::snprintf(buffer, sizeof(buffer), "%02x", b);
	return buffer;
}

} // namespace

// ---------------------------------------------------------------- values

Result<ServiceAddress> ServiceAddress::parse(std::string_view cidr)
{
	size_t slash = cidr.find('/');
	if (slash == std::string_view::npos)
		return makeError("address '" + std::string(cidr) + "' has no prefix length (want a.b.c.d/len or x::y/len)", EINVAL);
	std::string host(cidr.substr(0, slash));
	std::string_view prefix = cidr.substr(slash + 1);
	ServiceAddress out;
	if (::inet_pton(AF_INET, host.c_str(), out.address.data()) == 1)
		out.family = AF_INET;
	else if (::inet_pton(AF_INET6, host.c_str(), out.address.data()) == 1)
		out.family = AF_INET6;
	else
		return makeError("'" + host + "' is not an IPv4 or IPv6 address", EINVAL);
	unsigned length = 0;
	auto [end, ec] = std::from_chars(prefix.data(), prefix.data() + prefix.size(), length);
	unsigned maxPrefix = out.family == AF_INET ? 32 : 128;
	if (prefix.empty() || ec != std::errc() || end != prefix.data() + prefix.size() || length > maxPrefix)
		return makeError("'" + std::string(prefix) + "' is not a prefix length for " + host, EINVAL);
	out.prefixLength = static_cast<uint8_t>(length);
	return out;
}

std::string ServiceAddress::addressString() const
{
	char buffer[INET6_ADDRSTRLEN] = {};
	if (family != AF_INET && family != AF_INET6)
		return "?";
	::inet_ntop(family, address.data(), buffer, sizeof(buffer));
	return buffer;
}

std::string ServiceAddress::toString() const
{
	return addressString() + "/" + std::to_string(prefixLength);
}

Result<MacAddress> MacAddress::parse(std::string_view text)
{
	MacAddress out;
	size_t pos = 0;
	for (size_t i = 0; i < out.bytes.size(); ++i) {
		if (i > 0) {
			if (pos >= text.size() || text[pos] != ':')
				return makeError("'" + std::string(text) + "' is not a MAC address", EINVAL);
			++pos;
		}
		unsigned value = 0;
		auto [end, ec] = std::from_chars(text.data() + pos, text.data() + std::min(text.size(), pos + 2), value, 16);
		if (ec != std::errc() || end != text.data() + pos + 2)
			return makeError("'" + std::string(text) + "' is not a MAC address", EINVAL);
		out.bytes[i] = static_cast<uint8_t>(value);
		pos += 2;
	}
	if (pos != text.size())
		return makeError("'" + std::string(text) + "' is not a MAC address", EINVAL);
	return out;
}

std::string MacAddress::toString() const
{
	std::string out;
	for (size_t i = 0; i < bytes.size(); ++i) {
		if (i > 0)
			out += ':';
		out += hex2(bytes[i]);
	}
	return out;
}

std::string netnsLabel(int netnsFd)
{
	struct stat st {};
	if (::fstat(netnsFd, &st) < 0)
		return "net:[?]";
	return "net:[" + std::to_string(st.st_ino) + "]";
}

// ---------------------------------------------------------------- addresses

Status addAddress(int netnsFd, std::string_view interface, const ServiceAddress &address)
{
	Status valid = checkFamily(address);
	if (!valid.ok())
		return located(std::move(valid).error(), netnsFd, interface, address);
	Status s = runInNetns(netnsFd, [&]() -> Status {
		FERRY_TRY_ASSIGN(NlSocketPtr sock, connectRoute());
		FERRY_TRY_ASSIGN(RtnlLinkPtr link, findLink(sock.get(), interface));
		int ifindex = rtnl_link_get_ifindex(link.get());

		// The kernel would accept the same IPv4 address twice with different
		// prefixes, or on two interfaces; for a service address that is a
		// mistake, so look first and refuse.
		FERRY_TRY_ASSIGN(auto present, listAddresses(sock.get(), address.family));
		for (const KernelAddress &k : present) {
			if (!sameAddress(k.address, address))
				continue;
			std::string where = k.address.toString() + " is already present on " + ifName(k.ifindex);
			return makeError(where, EEXIST);
		}

		FERRY_TRY_ASSIGN(RtnlAddrPtr request, buildAddress(ifindex, address));
		// Without NODAD an IPv6 address stays tentative for a DAD round
		// (about a second): the restored sockets could not send from it.
		// The source has just given the address up, so DAD has nothing to find.
		if (address.family == AF_INET6)
			rtnl_addr_set_flags(request.get(), IFA_F_NODAD);
		int err = rtnl_addr_add(sock.get(), request.get(), NLM_F_EXCL);
		if (err < 0)
			return nlError(err, "kernel refused to add the address");
		return {};
	});
	if (!s.ok())
		return located(std::move(s).error(), netnsFd, interface, address);
	FERRY_LOG(logNetlink, Info) << "address added" << kv("address", address.toString())
		<< kv("interface", interface) << kv("netns", netnsLabel(netnsFd));
	return {};
}

Status removeAddress(int netnsFd, std::string_view interface, const ServiceAddress &address)
{
	Status valid = checkFamily(address);
	if (!valid.ok())
		return located(std::move(valid).error(), netnsFd, interface, address);
	Status s = runInNetns(netnsFd, [&]() -> Status {
		FERRY_TRY_ASSIGN(NlSocketPtr sock, connectRoute());
		FERRY_TRY_ASSIGN(RtnlLinkPtr link, findLink(sock.get(), interface));
		int ifindex = rtnl_link_get_ifindex(link.get());
		FERRY_TRY_ASSIGN(auto present, listAddresses(sock.get(), address.family));

		const KernelAddress *match = nullptr;
		std::string elsewhere;
		for (const KernelAddress &k : present) {
			if (!sameAddress(k.address, address))
				continue;
			if (k.ifindex == ifindex && k.address.prefixLength == address.prefixLength) {
				match = &k;
				break;
			}
			elsewhere += (elsewhere.empty() ? "" : ", ") + k.address.toString() + " on " + ifName(k.ifindex);
		}
		if (!match) {
			std::string what = "address is not on the interface, nothing removed";
			if (!elsewhere.empty())
				what += " (present as " + elsewhere + ")";
			return makeError(what, EADDRNOTAVAIL);
		}

		if (address.family == AF_INET && !(match->flags & IFA_F_SECONDARY) &&
		    !promoteSecondaries(std::string(interface))) {
			std::string secondaries;
			for (const KernelAddress &k : present) {
				if (k.ifindex == ifindex && (k.flags & IFA_F_SECONDARY) && inSubnet(k.address, address))
					secondaries += (secondaries.empty() ? "" : ", ") + k.address.toString();
			}
			if (!secondaries.empty())
				return makeError("address is the primary of its subnet and the kernel would delete its "
					"secondaries (" + secondaries + ") with it; set net.ipv4.conf." +
					std::string(interface) + ".promote_secondaries=1", EBUSY);
		}

		// The request carries IFA_LOCAL, IFA_ADDRESS and the prefix length, so
		// the kernel itself matches the prefix too (inet_rtm_deladdr,
		// inet6_addr_del): a race cannot make it delete another prefix.
		FERRY_TRY_ASSIGN(RtnlAddrPtr request, buildAddress(ifindex, address));
		int err = rtnl_addr_delete(sock.get(), request.get(), 0);
		if (err < 0)
			return nlError(err, "kernel refused to remove the address");
		return {};
	});
	if (!s.ok())
		return located(std::move(s).error(), netnsFd, interface, address);
	FERRY_LOG(logNetlink, Info) << "address removed" << kv("address", address.toString())
		<< kv("interface", interface) << kv("netns", netnsLabel(netnsFd));
	return {};
}

Result<bool> hasAddress(int netnsFd, std::string_view interface, const ServiceAddress &address)
{
	Result<bool> r = runInNetns(netnsFd, [&]() -> Result<bool> {
		FERRY_TRY_ASSIGN(NlSocketPtr sock, connectRoute());
		FERRY_TRY_ASSIGN(RtnlLinkPtr link, findLink(sock.get(), interface));
		int ifindex = rtnl_link_get_ifindex(link.get());
		FERRY_TRY_ASSIGN(auto present, listAddresses(sock.get(), address.family));
		for (const KernelAddress &k : present) {
			if (k.ifindex == ifindex && sameAddress(k.address, address) &&
			    k.address.prefixLength == address.prefixLength)
				return true;
		}
		return false;
	});
	if (!r.ok())
		return located(std::move(r).error(), netnsFd, interface, address);
	return r;
}

// ---------------------------------------------------------------- MAC

Result<MacAddress> interfaceMac(int netnsFd, std::string_view interface)
{
	Result<MacAddress> r = runInNetns(netnsFd, [&]() -> Result<MacAddress> {
		FERRY_TRY_ASSIGN(NlSocketPtr sock, connectRoute());
		FERRY_TRY_ASSIGN(RtnlLinkPtr link, findLink(sock.get(), interface));
		nl_addr *lladdr = rtnl_link_get_addr(link.get());
		MacAddress mac;
		if (!lladdr || nl_addr_get_len(lladdr) != mac.bytes.size())
			return makeError("interface has no Ethernet hardware address", EAFNOSUPPORT);
		std::memcpy(mac.bytes.data(), nl_addr_get_binary_addr(lladdr), mac.bytes.size());
		return mac;
	});
	if (!r.ok())
		return std::move(r.error()).at("netns", netnsLabel(netnsFd)).at("interface", interface);
	return r;
}

Status setInterfaceMac(int netnsFd, std::string_view interface, const MacAddress &mac)
{
	if (mac.bytes[0] & 0x01)
		return makeError("'" + mac.toString() + "' is a multicast address, not usable as an interface address", EINVAL)
			.at("interface", interface);
	Status s = runInNetns(netnsFd, [&]() -> Status {
		FERRY_TRY_ASSIGN(NlSocketPtr sock, connectRoute());
		FERRY_TRY_ASSIGN(RtnlLinkPtr link, findLink(sock.get(), interface));
		RtnlLinkPtr change(rtnl_link_alloc());
		NlAddrPtr lladdr(nl_addr_build(AF_LLC, mac.bytes.data(), mac.bytes.size()));
		if (!change || !lladdr)
			return makeError("cannot allocate a link change request", ENOMEM);
		rtnl_link_set_addr(change.get(), lladdr.get());
		int err = rtnl_link_change(sock.get(), link.get(), change.get(), 0);
		if (err < 0)
			return nlError(err, "kernel refused to change the hardware address");
		return {};
	});
	if (!s.ok())
		return std::move(s).error().at("netns", netnsLabel(netnsFd)).at("interface", interface)
			.at("mac", mac.toString());
	FERRY_LOG(logNetlink, Info) << "hardware address set" << kv("mac", mac.toString())
		<< kv("interface", interface) << kv("netns", netnsLabel(netnsFd));
	return {};
}

Result<MacAddress> releaseInterfaceMac(int netnsFd, std::string_view interface)
{
	FERRY_TRY_ASSIGN(MacAddress old, interfaceMac(netnsFd, interface));
	MacAddress fresh;
	do {
		if (::getrandom(fresh.bytes.data(), fresh.bytes.size(), 0) != static_cast<ssize_t>(fresh.bytes.size()))
			return errnoError("getrandom for a replacement MAC failed").at("interface", interface);
		// Locally administered (bit 1), unicast (bit 0 clear).
		fresh.bytes[0] = static_cast<uint8_t>((fresh.bytes[0] & 0xfc) | 0x02);
	} while (fresh == old);
	FERRY_TRY(setInterfaceMac(netnsFd, interface, fresh));
	return old;
}

} // namespace ferry::netlink
