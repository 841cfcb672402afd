// Address switch against the real kernel: addresses really leave one
// namespace and come up in another, and every refused request leaves the
// namespaces exactly as they were. The oracle is `ip addr`, not ferry's own
// lookups.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <string>
#include <vector>

#include "base/netns.h"
#include "base/unique_fd.h"
#include "netlink/address_switch.h"
#include "test_network.h"

using namespace ferry;
using ferry::netlink::MacAddress;
using ferry::netlink::ServiceAddress;

namespace {

ServiceAddress cidr(const char *text)
{
	auto parsed = ServiceAddress::parse(text);
	REQUIRE_MESSAGE(parsed.ok(), text);
	return *parsed;
}

std::string addressesOf(const test::TestHost &host, const std::string &dev = "eth0")
{
	return test::captureOutput("ip -o -n " + host.netns + " addr show dev " + dev);
}

// True if `ip addr` lists exactly this address/prefix on the device.
bool listed(const test::TestHost &host, const std::string &cidrText, const std::string &dev = "eth0")
{
	std::string family = cidrText.find(':') != std::string::npos ? " inet6 " : " inet ";
	return addressesOf(host, dev).find(family + cidrText + " ") != std::string::npos;
}

bool tentative(const test::TestHost &host, const std::string &cidrText)
{
	std::string out = addressesOf(host);
	size_t at = out.find(" inet6 " + cidrText + " ");
	if (at == std::string::npos)
		return false;
	size_t end = out.find('\n', at);
	return out.substr(at, end - at).find("tentative") != std::string::npos;
}

// bind() to the address inside the namespace: fails while it is tentative.
int bindError(int netnsFd, const ServiceAddress &address)
{
	Result<int> r = runInNetns(netnsFd, [&]() -> Result<int> {
		UniqueFd fd(::socket(address.family, SOCK_STREAM | SOCK_CLOEXEC, 0));
		if (!fd)
			return errnoError("socket");
		sockaddr_storage ss {};
		socklen_t len = 0;
		if (address.family == AF_INET) {
			auto *in = reinterpret_cast<sockaddr_in *>(&ss);
			in->sin_family = AF_INET;
			std::memcpy(&in->sin_addr, address.address.data(), 4);
			len = sizeof(*in);
		} else {
			auto *in6 = reinterpret_cast<sockaddr_in6 *>(&ss);
			in6->sin6_family = AF_INET6;
			std::memcpy(&in6->sin6_addr, address.address.data(), 16);
			len = sizeof(*in6);
		}
		return ::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) == 0 ? 0 : errno;
	});
	REQUIRE(r.ok());
	return *r;
}

void checkNamesPlace(const Error &err, const std::string &address, const std::string &interface, int netnsFd)
{
	std::string message = err.message();
	INFO(message);
	CHECK(message.find("address=" + address) != std::string::npos);
	CHECK(message.find("interface=" + interface) != std::string::npos);
	CHECK(message.find("netns=" + netlink::netnsLabel(netnsFd)) != std::string::npos);
}

} // namespace

TEST_CASE("service addresses parse with their prefix, and only with one")
{
	ServiceAddress v4 = cidr("198.51.100.10/24");
	CHECK(v4.family == AF_INET);
	CHECK(v4.prefixLength == 24);
	CHECK(v4.toString() == "198.51.100.10/24");
	ServiceAddress v6 = cidr("2001:db8::10/64");
	CHECK(v6.family == AF_INET6);
	CHECK(v6.toString() == "2001:db8::10/64");

	CHECK(ServiceAddress::parse("198.51.100.10").error().code == EINVAL);
	CHECK_FALSE(ServiceAddress::parse("198.51.100.10/33").ok());
	CHECK_FALSE(ServiceAddress::parse("2001:db8::10/129").ok());
	CHECK_FALSE(ServiceAddress::parse("198.51.100.10/").ok());
	CHECK_FALSE(ServiceAddress::parse("198.51.100.300/24").ok());

	auto mac = MacAddress::parse("02:00:5e:10:00:0a");
	REQUIRE(mac.ok());
	CHECK(mac->toString() == "02:00:5e:10:00:0a");
	CHECK_FALSE(MacAddress::parse("02:00:5e:10:00").ok());
	CHECK_FALSE(MacAddress::parse("02:00:5e:10:00:0g").ok());
}

TEST_CASE("the service address leaves A and comes up on B, IPv4 and IPv6")
{
	test::TestNetwork net;
	const test::TestHost a = net.addHost("hostA", {"198.51.100.2/24", "2001:db8::2/64", "198.51.100.10/24", "2001:db8::10/64"});
	const test::TestHost b = net.addHost("hostB", {"198.51.100.3/24", "2001:db8::3/64"});
	// Make B run DAD, so that NODAD is what keeps the moved address usable.
	test::mustRun(b.exec("sysctl -qw net.ipv6.conf.eth0.accept_dad=1"));
	UniqueFd nsA = a.open();
	UniqueFd nsB = b.open();

	for (const char *text : {"198.51.100.10/24", "2001:db8::10/64"}) {
		CAPTURE(text);
		ServiceAddress service = cidr(text);
		REQUIRE(listed(a, text));
		REQUIRE_FALSE(listed(b, text));

		Status removed = netlink::removeAddress(nsA.get(), "eth0", service);
		REQUIRE_MESSAGE(removed.ok(), removed.error().message());
		CHECK_FALSE(listed(a, text));
		CHECK(*netlink::hasAddress(nsA.get(), "eth0", service) == false);

		Status added = netlink::addAddress(nsB.get(), "eth0", service);
		REQUIRE_MESSAGE(added.ok(), added.error().message());
		CHECK(listed(b, text));
		CHECK(*netlink::hasAddress(nsB.get(), "eth0", service) == true);
		// Usable at once: a restored socket can bind to it right away.
		CHECK_FALSE(tentative(b, text));
		CHECK(bindError(nsB.get(), service) == 0);
		// The neighbouring addresses were not touched.
		CHECK(listed(a, service.family == AF_INET ? "198.51.100.2/24" : "2001:db8::2/64"));
	}

	// Control: the same move done without NODAD leaves the address
	// tentative and unbindable, so the check above can fail.
	test::mustRun("ip -n " + b.netns + " addr add 2001:db8::20/64 dev eth0");
	CHECK(tentative(b, "2001:db8::20/64"));
	CHECK(bindError(nsB.get(), cidr("2001:db8::20/64")) == EADDRNOTAVAIL);
}

TEST_CASE("adding an address that is already present is refused and changes nothing")
{
	test::TestNetwork net;
	const test::TestHost b = net.addHost("hostB", {"198.51.100.10/24", "2001:db8::10/64"});
	UniqueFd ns = b.open();

	for (const char *text : {"198.51.100.10/24", "2001:db8::10/64"}) {
		CAPTURE(text);
		Status s = netlink::addAddress(ns.get(), "eth0", cidr(text));
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().code == EEXIST);
		checkNamesPlace(s.error(), text, "eth0", ns.get());
	}
	// The same address with another prefix is the same service address: the
	// kernel would take a second IPv4 copy, ferry refuses.
	Status other = netlink::addAddress(ns.get(), "eth0", cidr("198.51.100.10/25"));
	REQUIRE_FALSE(other.ok());
	CHECK(other.error().code == EEXIST);
	CHECK(other.error().what.find("198.51.100.10/24") != std::string::npos);
	CHECK_FALSE(listed(b, "198.51.100.10/25"));

	// Present on another interface of the namespace: refused as well.
	test::mustRun("ip -n " + b.netns + " link add d0 type veth peer name d1");
	Status onD0 = netlink::addAddress(ns.get(), "d0", cidr("2001:db8::10/64"));
	REQUIRE_FALSE(onD0.ok());
	CHECK(onD0.error().code == EEXIST);
	CHECK(onD0.error().what.find("eth0") != std::string::npos);
	CHECK(addressesOf(b, "d0").find("2001:db8::10") == std::string::npos);
}

TEST_CASE("removing an absent address is refused and removes nothing")
{
	test::TestNetwork net;
	const test::TestHost a = net.addHost("hostA", {"198.51.100.2/24", "2001:db8::2/64"});
	UniqueFd ns = a.open();
	std::string before = addressesOf(a);

	for (const char *text : {"198.51.100.10/24", "2001:db8::10/64"}) {
		CAPTURE(text);
		Status s = netlink::removeAddress(ns.get(), "eth0", cidr(text));
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().code == EADDRNOTAVAIL);
		checkNamesPlace(s.error(), text, "eth0", ns.get());
	}
	CHECK(addressesOf(a) == before);
}

TEST_CASE("a wrong prefix does not remove the address that has another prefix")
{
	test::TestNetwork net;
	const test::TestHost a = net.addHost("hostA", {"198.51.100.2/24", "198.51.100.10/24", "2001:db8::10/64"});
	UniqueFd ns = a.open();

	struct Case {
		const char *present;
		const char *asked;
	};
	for (Case c : {Case{"198.51.100.10/24", "198.51.100.10/25"}, Case{"198.51.100.10/24", "198.51.100.10/32"},
		     Case{"2001:db8::10/64", "2001:db8::10/80"}, Case{"2001:db8::10/64", "2001:db8::10/128"}}) {
		CAPTURE(c.asked);
		Status s = netlink::removeAddress(ns.get(), "eth0", cidr(c.asked));
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().code == EADDRNOTAVAIL);
		// The message points at what is there instead.
		CHECK(s.error().what.find(std::string(c.present) + " on eth0") != std::string::npos);
		CHECK(listed(a, c.present));
	}
}

TEST_CASE("an address on another interface is neither found nor removed")
{
	test::TestNetwork net;
	const test::TestHost a = net.addHost("hostA", {"198.51.100.2/24"});
	test::mustRun("ip -n " + a.netns + " link add d0 type veth peer name d1");
	test::mustRun("ip -n " + a.netns + " addr add 198.51.100.10/24 dev d0");
	test::mustRun("ip -n " + a.netns + " addr add 2001:db8::10/64 dev d0 nodad");
	UniqueFd ns = a.open();

	for (const char *text : {"198.51.100.10/24", "2001:db8::10/64"}) {
		CAPTURE(text);
		Status s = netlink::removeAddress(ns.get(), "eth0", cidr(text));
		REQUIRE_FALSE(s.ok());
		CHECK(s.error().code == EADDRNOTAVAIL);
		CHECK(s.error().what.find("on d0") != std::string::npos);
		CHECK(listed(a, text, "d0"));
	}
}

TEST_CASE("a bad interface name gives a clear error")
{
	test::TestNetwork net;
	const test::TestHost a = net.addHost("hostA", {"198.51.100.10/24"});
	UniqueFd ns = a.open();
	ServiceAddress service = cidr("198.51.100.10/24");

	Status remove = netlink::removeAddress(ns.get(), "nosuch0", service);
	REQUIRE_FALSE(remove.ok());
	CHECK(remove.error().code == ENODEV);
	CHECK(remove.error().what.find("nosuch0") != std::string::npos);
	checkNamesPlace(remove.error(), "198.51.100.10/24", "nosuch0", ns.get());

	Status add = netlink::addAddress(ns.get(), "nosuch0", cidr("2001:db8::10/64"));
	REQUIRE_FALSE(add.ok());
	CHECK(add.error().code == ENODEV);

	Status tooLong = netlink::addAddress(ns.get(), "a-name-longer-than-ifnamsiz", service);
	REQUIRE_FALSE(tooLong.ok());
	CHECK(tooLong.error().code == EINVAL);

	CHECK(netlink::interfaceMac(ns.get(), "nosuch0").error().code == ENODEV);
	CHECK(listed(a, "198.51.100.10/24"));
}

TEST_CASE("an IPv4 primary is not removed while the kernel would take its secondaries along")
{
	test::TestNetwork net;
	// 198.51.100.10/24 comes first, so it is the primary; .11 is secondary.
	const test::TestHost a = net.addHost("hostA", {"198.51.100.10/24", "198.51.100.11/24"});
	test::mustRun(a.exec("sysctl -qw net.ipv4.conf.all.promote_secondaries=0 net.ipv4.conf.eth0.promote_secondaries=0"));
	UniqueFd ns = a.open();
	ServiceAddress service = cidr("198.51.100.10/24");

	Status refused = netlink::removeAddress(ns.get(), "eth0", service);
	REQUIRE_FALSE(refused.ok());
	CHECK(refused.error().code == EBUSY);
	CHECK(refused.error().what.find("198.51.100.11/24") != std::string::npos);
	CHECK(listed(a, "198.51.100.10/24"));
	CHECK(listed(a, "198.51.100.11/24"));

	// With promotion on, the secondary survives the removal.
	test::mustRun(a.exec("sysctl -qw net.ipv4.conf.eth0.promote_secondaries=1"));
	Status removed = netlink::removeAddress(ns.get(), "eth0", service);
	REQUIRE_MESSAGE(removed.ok(), removed.error().message());
	CHECK_FALSE(listed(a, "198.51.100.10/24"));
	CHECK(listed(a, "198.51.100.11/24"));

	// Removing a secondary never needs promotion.
	test::mustRun("ip -n " + a.netns + " addr add 198.51.100.12/24 dev eth0");
	test::mustRun(a.exec("sysctl -qw net.ipv4.conf.eth0.promote_secondaries=0"));
	Status secondary = netlink::removeAddress(ns.get(), "eth0", cidr("198.51.100.12/24"));
	CHECK_MESSAGE(secondary.ok(), secondary.error().message());
	CHECK(listed(a, "198.51.100.11/24"));
}

TEST_CASE("the interface MAC can move from A to B")
{
	test::TestNetwork net;
	const test::TestHost a = net.addHost("hostA", {"198.51.100.2/24"});
	const test::TestHost b = net.addHost("hostB", {"198.51.100.3/24"});
	UniqueFd nsA = a.open();
	UniqueFd nsB = b.open();

	auto macA = netlink::interfaceMac(nsA.get(), "eth0");
	auto macB = netlink::interfaceMac(nsB.get(), "eth0");
	REQUIRE_MESSAGE(macA.ok(), macA.error().message());
	REQUIRE(macB.ok());
	REQUIRE(*macA != *macB);
	// The oracle: what `ip link` says.
	CHECK(test::captureOutput("ip -o -n " + a.netns + " link show eth0").find(macA->toString()) != std::string::npos);

	auto released = netlink::releaseInterfaceMac(nsA.get(), "eth0");
	REQUIRE_MESSAGE(released.ok(), released.error().message());
	CHECK(*released == *macA);
	auto fresh = netlink::interfaceMac(nsA.get(), "eth0");
	REQUIRE(fresh.ok());
	CHECK(*fresh != *macA);
	CHECK((fresh->bytes[0] & 0x03) == 0x02); // locally administered unicast

	Status set = netlink::setInterfaceMac(nsB.get(), "eth0", *released);
	REQUIRE_MESSAGE(set.ok(), set.error().message());
	CHECK(test::captureOutput("ip -o -n " + b.netns + " link show eth0").find(macA->toString()) != std::string::npos);
	// The link stayed up.
	CHECK(test::captureOutput("ip -o -n " + b.netns + " link show eth0").find("state UP") != std::string::npos);

	MacAddress multicast = *MacAddress::parse("01:00:5e:00:00:01");
	CHECK(netlink::setInterfaceMac(nsB.get(), "eth0", multicast).error().code == EINVAL);
}
