// Neighbour announce against the real kernel: the frames on the wire have
// the fields peers check, and after address switch + announce a peer that
// had talked to A reaches B at once (its neighbour table and the bridge's
// forwarding table both say so), IPv4 and IPv6.
#include <doctest/doctest.h>

#include <arpa/inet.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <net/if_arp.h>
#include <netinet/icmp6.h>
#include <netinet/if_ether.h>
#include <netinet/in.h>
#include <netinet/ip6.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>

#include <chrono>
#include <cstring>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "base/netns.h"
#include "base/unique_fd.h"
#include "netlink/address_switch.h"
#include "netlink/neighbour_announce.h"
#include "test_network.h"

using namespace ferry;
using ferry::netlink::AnnounceOptions;
using ferry::netlink::MacAddress;
using ferry::netlink::ServiceAddress;
using Clock = std::chrono::steady_clock;

namespace {

const char *const kService4 = "198.51.100.10/24";
const char *const kService6 = "2001:db8::10/64";

ServiceAddress cidr(const char *text)
{
	auto parsed = ServiceAddress::parse(text);
	REQUIRE_MESSAGE(parsed.ok(), text);
	return *parsed;
}

MacAddress macOf(int netnsFd)
{
	auto mac = netlink::interfaceMac(netnsFd, "eth0");
	REQUIRE_MESSAGE(mac.ok(), mac.error().message());
	return *mac;
}

// The MAC the host's neighbour table holds for `ip` on eth0, "" if none.
std::string neighbourMac(const test::TestHost &host, const std::string &ip)
{
	std::string out = test::captureOutput("ip -n " + host.netns + " neigh show to " + ip + " dev eth0");
	size_t at = out.find("lladdr ");
	if (at == std::string::npos)
		return "";
	return out.substr(at + 7, 17);
}

// Polls briefly: the frames are processed in softirq context right after
// send, but the check must not depend on scheduling. A second is far below
// any neighbour or fdb expiry (30 s reachable time, 300 s ageing).
std::string neighbourMacSettled(const test::TestHost &host, const std::string &ip, const std::string &want)
{
	std::string mac;
	for (int i = 0; i < 20; ++i) {
		mac = neighbourMac(host, ip);
		if (mac == want)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	return mac;
}

// The bridge port (in the switch namespace) that `host`'s eth0 is plugged into.
std::string switchPortOf(const test::TestNetwork &net, const test::TestHost &host)
{
	std::string peerIndex = test::captureOutput(host.exec("cat /sys/class/net/eth0/iflink"));
	peerIndex = peerIndex.substr(0, peerIndex.find('\n'));
	std::istringstream links(test::captureOutput("ip -o -n " + net.switchNetns() + " link show"));
	std::string line;
	while (std::getline(links, line)) {
		if (line.rfind(peerIndex + ": ", 0) != 0)
			continue;
		std::string name = line.substr(peerIndex.size() + 2);
		return name.substr(0, name.find_first_of("@:"));
	}
	return "";
}

// The port the bridge has learned `mac` on, "" if it has not.
std::string fdbPortOf(const test::TestNetwork &net, const std::string &mac)
{
	std::istringstream fdb(test::captureOutput("ip netns exec " + net.switchNetns() + " bridge fdb show br br0"));
	std::string line;
	while (std::getline(fdb, line)) {
		if (line.rfind(mac + " dev ", 0) != 0 || line.find("permanent") != std::string::npos)
			continue;
		std::string rest = line.substr(mac.size() + 5);
		return rest.substr(0, rest.find(' '));
	}
	return "";
}

std::string fdbPortSettled(const test::TestNetwork &net, const std::string &mac, const std::string &want)
{
	std::string port;
	for (int i = 0; i < 20; ++i) {
		port = fdbPortOf(net, mac);
		if (port == want)
			break;
		std::this_thread::sleep_for(std::chrono::milliseconds(50));
	}
	return port;
}

sockaddr_storage socketAddress(const ServiceAddress &address, uint16_t port, socklen_t &len)
{
	sockaddr_storage ss {};
	if (address.family == AF_INET) {
		auto *in = reinterpret_cast<sockaddr_in *>(&ss);
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		std::memcpy(&in->sin_addr, address.address.data(), 4);
		len = sizeof(*in);
	} else {
		auto *in6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		std::memcpy(&in6->sin6_addr, address.address.data(), 16);
		len = sizeof(*in6);
	}
	return ss;
}

// One ICMP echo from inside `fromNs` to `to`, through a ping socket.
bool ping(int fromNs, const ServiceAddress &to)
{
	Result<bool> r = runInNetns(fromNs, [&]() -> Result<bool> {
		bool v4 = to.family == AF_INET;
		UniqueFd fd(::socket(to.family, SOCK_DGRAM | SOCK_CLOEXEC, v4 ? int(IPPROTO_ICMP) : int(IPPROTO_ICMPV6)));
		if (!fd)
			return errnoError("ping socket");
		uint8_t request[16] = {};
		request[0] = static_cast<uint8_t>(v4 ? int(ICMP_ECHO) : int(ICMP6_ECHO_REQUEST));
		request[7] = 1; // sequence
		socklen_t len = 0;
		sockaddr_storage ss = socketAddress(to, 0, len);
		if (::sendto(fd.get(), request, sizeof(request), 0, reinterpret_cast<sockaddr *>(&ss), len) < 0)
			return errnoError("ping sendto");
		pollfd p {fd.get(), POLLIN, 0};
		if (::poll(&p, 1, 2000) != 1)
			return false;
		uint8_t reply[64];
		ssize_t n = ::recv(fd.get(), reply, sizeof(reply), 0);
		return n >= 8 && reply[0] == (v4 ? int(ICMP_ECHOREPLY) : int(ICMP6_ECHO_REPLY));
	});
	REQUIRE_MESSAGE(r.ok(), r.error().message());
	return *r;
}

// A new TCP connection from `clientNs` to the service address: true if a
// listener inside `serverNs` accepted it.
bool tcpReaches(int clientNs, int serverNs, const ServiceAddress &service)
{
	Result<UniqueFd> listener = runInNetns(serverNs, [&]() -> Result<UniqueFd> {
		UniqueFd fd(::socket(service.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
		socklen_t len = 0;
		sockaddr_storage ss = socketAddress(service, 0, len);
		if (!fd || ::bind(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0 || ::listen(fd.get(), 4) < 0)
			return errnoError("listen on the service address");
		return fd;
	});
	REQUIRE_MESSAGE(listener.ok(), listener.error().message());
	sockaddr_storage bound {};
	socklen_t boundLen = sizeof(bound);
	::getsockname(listener->get(), reinterpret_cast<sockaddr *>(&bound), &boundLen);
	uint16_t port = ntohs(service.family == AF_INET ? reinterpret_cast<sockaddr_in *>(&bound)->sin_port
							 : reinterpret_cast<sockaddr_in6 *>(&bound)->sin6_port);

	Result<UniqueFd> client = runInNetns(clientNs, [&]() -> Result<UniqueFd> {
		UniqueFd fd(::socket(service.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
		socklen_t len = 0;
		sockaddr_storage ss = socketAddress(service, port, len);
		if (!fd)
			return errnoError("client socket");
		if (::connect(fd.get(), reinterpret_cast<sockaddr *>(&ss), len) < 0 && errno != EINPROGRESS)
			return errnoError("connect");
		return fd;
	});
	REQUIRE_MESSAGE(client.ok(), client.error().message());
	pollfd p {listener->get(), POLLIN, 0};
	if (::poll(&p, 1, 2000) != 1)
		return false;
	UniqueFd accepted(::accept4(listener->get(), nullptr, nullptr, SOCK_CLOEXEC));
	return accepted.isValid();
}

struct Frame {
	std::vector<uint8_t> bytes;
	MacAddress source;
	int packetType = 0;
	Clock::time_point at; // when the test read it
};

// An AF_PACKET socket inside `netnsFd` that sees frames of `ethertype`.
UniqueFd openCapture(int netnsFd, uint16_t ethertype)
{
	Result<UniqueFd> r = runInNetns(netnsFd, [&]() -> Result<UniqueFd> {
		UniqueFd fd(::socket(AF_PACKET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, htons(ethertype)));
		if (!fd)
			return errnoError("AF_PACKET socket");
		sockaddr_ll ll {};
		ll.sll_family = AF_PACKET;
		ll.sll_protocol = htons(ethertype);
		ll.sll_ifindex = static_cast<int>(::if_nametoindex("eth0"));
		if (::bind(fd.get(), reinterpret_cast<sockaddr *>(&ll), sizeof(ll)) < 0)
			return errnoError("bind AF_PACKET");
		return fd;
	});
	REQUIRE_MESSAGE(r.ok(), r.error().message());
	return std::move(r).value();
}

std::vector<Frame> drain(int fd)
{
	std::vector<Frame> frames;
	for (;;) {
		uint8_t buffer[2048];
		sockaddr_ll from {};
		socklen_t fromLen = sizeof(from);
		ssize_t n = ::recvfrom(fd, buffer, sizeof(buffer), 0, reinterpret_cast<sockaddr *>(&from), &fromLen);
		if (n < 0)
			break;
		Frame f;
		f.bytes.assign(buffer, buffer + n);
		std::memcpy(f.source.bytes.data(), from.sll_addr, 6);
		f.packetType = from.sll_pkttype;
		f.at = Clock::now();
		frames.push_back(std::move(f));
	}
	return frames;
}

// Reads frames until `fd` has been quiet for `quiet`.
std::vector<Frame> collect(int fd, std::chrono::milliseconds quiet)
{
	std::vector<Frame> frames;
	for (;;) {
		pollfd p {fd, POLLIN, 0};
		if (::poll(&p, 1, static_cast<int>(quiet.count())) != 1)
			return frames;
		for (Frame &f : drain(fd))
			frames.push_back(std::move(f));
	}
}

} // namespace

TEST_CASE("the announce frames carry what peers check, count times, interval apart")
{
	test::TestNetwork net;
	const test::TestHost peer = net.addHost("peer", {"198.51.100.1/24", "2001:db8::1/64"});
	const test::TestHost b = net.addHost("hostB", {"198.51.100.3/24", "2001:db8::3/64", kService4, kService6});
	UniqueFd nsPeer = peer.open();
	UniqueFd nsB = b.open();
	MacAddress macB = macOf(nsB.get());
	AnnounceOptions options;
	options.count = 3;
	options.interval = std::chrono::milliseconds(100);

	SUBCASE("gratuitous ARP")
	{
		ServiceAddress service = cidr(kService4);
		UniqueFd capture = openCapture(nsPeer.get(), ETH_P_ARP);
		drain(capture.get());
		Clock::time_point start = Clock::now();
		Status s;
		Clock::time_point end;
		// Capture while the announce runs, so arrival times are real.
		std::thread announcer([&] {
			s = netlink::announceAddress(nsB.get(), "eth0", service, options);
			end = Clock::now();
		});
		std::vector<Frame> captured = collect(capture.get(), std::chrono::milliseconds(400));
		announcer.join();
		REQUIRE_MESSAGE(s.ok(), s.error().message());
		CHECK(end - start >= std::chrono::milliseconds(200));

		std::vector<Frame> garps;
		for (Frame &f : captured) {
			if (f.bytes.size() < sizeof(ether_arp))
				continue;
			ether_arp arp;
			std::memcpy(&arp, f.bytes.data(), sizeof(arp));
			if (std::memcmp(arp.arp_spa, service.address.data(), 4) == 0)
				garps.push_back(f);
		}
		REQUIRE(garps.size() == 3);
		CHECK(garps.back().at - garps.front().at >= std::chrono::milliseconds(150));
		for (const Frame &f : garps) {
			ether_arp arp;
			std::memcpy(&arp, f.bytes.data(), sizeof(arp));
			CHECK(ntohs(arp.arp_op) == ARPOP_REQUEST);
			CHECK(ntohs(arp.arp_hrd) == ARPHRD_ETHER);
			CHECK(ntohs(arp.arp_pro) == ETH_P_IP);
			CHECK(std::memcmp(arp.arp_tpa, service.address.data(), 4) == 0); // sender == target
			CHECK(std::memcmp(arp.arp_sha, macB.bytes.data(), 6) == 0);
			CHECK(f.source == macB);                 // Ethernet source: the switch learns from it
			CHECK(f.packetType == PACKET_BROADCAST);
		}
	}

	SUBCASE("unsolicited neighbour advertisement")
	{
		ServiceAddress service = cidr(kService6);
		UniqueFd capture = openCapture(nsPeer.get(), ETH_P_IPV6);
		drain(capture.get());
		Status s;
		std::thread announcer([&] { s = netlink::announceAddress(nsB.get(), "eth0", service, options); });
		std::vector<Frame> captured = collect(capture.get(), std::chrono::milliseconds(400));
		announcer.join();
		REQUIRE_MESSAGE(s.ok(), s.error().message());

		in6_addr allNodes {};
		::inet_pton(AF_INET6, "ff02::1", &allNodes);
		std::vector<Frame> adverts;
		for (Frame &f : captured) {
			if (f.bytes.size() < sizeof(ip6_hdr) + sizeof(nd_neighbor_advert))
				continue;
			ip6_hdr ip;
			std::memcpy(&ip, f.bytes.data(), sizeof(ip));
			if (ip.ip6_nxt == IPPROTO_ICMPV6 && f.bytes[sizeof(ip6_hdr)] == ND_NEIGHBOR_ADVERT)
				adverts.push_back(f);
		}
		REQUIRE(adverts.size() == 3);
		CHECK(adverts.back().at - adverts.front().at >= std::chrono::milliseconds(150));
		for (const Frame &f : adverts) {
			ip6_hdr ip;
			std::memcpy(&ip, f.bytes.data(), sizeof(ip));
			CHECK(ip.ip6_hlim == 255);
			CHECK(std::memcmp(&ip.ip6_dst, &allNodes, 16) == 0);
			CHECK(std::memcmp(&ip.ip6_src, service.address.data(), 16) == 0);
			REQUIRE(f.bytes.size() >= sizeof(ip6_hdr) + sizeof(nd_neighbor_advert) + 8);
			nd_neighbor_advert na;
			std::memcpy(&na, f.bytes.data() + sizeof(ip6_hdr), sizeof(na));
			CHECK(na.nd_na_code == 0);
			CHECK((na.nd_na_flags_reserved & ND_NA_FLAG_OVERRIDE) != 0);
			CHECK((na.nd_na_flags_reserved & ND_NA_FLAG_SOLICITED) == 0);
			CHECK((na.nd_na_flags_reserved & ND_NA_FLAG_ROUTER) == 0);
			CHECK(std::memcmp(&na.nd_na_target, service.address.data(), 16) == 0);
			const uint8_t *option = f.bytes.data() + sizeof(ip6_hdr) + sizeof(nd_neighbor_advert);
			CHECK(option[0] == ND_OPT_TARGET_LINKADDR);
			CHECK(option[1] == 1);
			CHECK(std::memcmp(option + 2, macB.bytes.data(), 6) == 0);
			CHECK(f.source == macB);
		}
	}
}

TEST_CASE("address switch plus announce moves a live peer's traffic to B, IPv4 and IPv6")
{
	test::TestNetwork net;
	const test::TestHost peer = net.addHost("peer", {"198.51.100.1/24", "2001:db8::1/64"});
	const test::TestHost a = net.addHost("hostA", {"198.51.100.2/24", "2001:db8::2/64", kService4, kService6});
	const test::TestHost b = net.addHost("hostB", {"198.51.100.3/24", "2001:db8::3/64"});
	test::mustRun(peer.exec("sysctl -qw net.ipv4.ping_group_range='0 0'"));
	UniqueFd nsPeer = peer.open();
	UniqueFd nsA = a.open();
	UniqueFd nsB = b.open();
	std::string macA = macOf(nsA.get()).toString();
	std::string macB = macOf(nsB.get()).toString();
	std::string portB = switchPortOf(net, b);
	REQUIRE(!portB.empty());

	for (const char *text : {kService4, kService6}) {
		CAPTURE(text);
		ServiceAddress service = cidr(text);
		std::string ip = service.addressString();

		// The realistic case: the peer has talked to A, so it holds a
		// neighbour entry with A's MAC for the service address.
		REQUIRE(ping(nsPeer.get(), service));
		REQUIRE(tcpReaches(nsPeer.get(), nsA.get(), service));
		REQUIRE(neighbourMac(peer, ip) == macA);

		auto start = Clock::now();
		REQUIRE(netlink::removeAddress(nsA.get(), "eth0", service).ok());
		REQUIRE(netlink::addAddress(nsB.get(), "eth0", service).ok());
		MESSAGE("address switch " << std::string(text) << ": " << std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count() << " us");
		// Control: moving the address alone teaches the peer nothing.
		CHECK(neighbourMac(peer, ip) == macA);

		// Forget B's MAC in the switch, so that only B's announce can teach it.
		test::runCommand("ip netns exec " + net.switchNetns() + " bridge fdb del " + macB + " dev " + portB + " master 2>/dev/null");

		AnnounceOptions options;
		options.count = 2;
		options.interval = std::chrono::milliseconds(50);
		Status announced = netlink::announceAddress(nsB.get(), "eth0", service, options);
		REQUIRE_MESSAGE(announced.ok(), announced.error().message());

		CHECK(neighbourMacSettled(peer, ip, macB) == macB);
		CHECK(fdbPortSettled(net, macB, portB) == portB);
		CHECK(ping(nsPeer.get(), service));
		CHECK(tcpReaches(nsPeer.get(), nsB.get(), service));
	}
}

TEST_CASE("moving the MAC with the address: peers keep their entry, the switch moves the MAC to B's port")
{
	test::TestNetwork net;
	const test::TestHost peer = net.addHost("peer", {"198.51.100.1/24", "2001:db8::1/64"});
	const test::TestHost a = net.addHost("hostA", {kService4, kService6});
	const test::TestHost b = net.addHost("hostB", {});
	test::mustRun(peer.exec("sysctl -qw net.ipv4.ping_group_range='0 0'"));
	UniqueFd nsPeer = peer.open();
	UniqueFd nsA = a.open();
	UniqueFd nsB = b.open();
	std::string portA = switchPortOf(net, a);
	std::string portB = switchPortOf(net, b);
	ServiceAddress service4 = cidr(kService4);
	ServiceAddress service6 = cidr(kService6);

	REQUIRE(ping(nsPeer.get(), service4));
	REQUIRE(ping(nsPeer.get(), service6));
	std::string macA = macOf(nsA.get()).toString();
	REQUIRE(neighbourMac(peer, service4.addressString()) == macA);
	REQUIRE(neighbourMac(peer, service6.addressString()) == macA);
	REQUIRE(fdbPortOf(net, macA) == portA);

	// The migration order: A lets go of address and MAC, B takes both.
	REQUIRE(netlink::removeAddress(nsA.get(), "eth0", service4).ok());
	REQUIRE(netlink::removeAddress(nsA.get(), "eth0", service6).ok());
	auto released = netlink::releaseInterfaceMac(nsA.get(), "eth0");
	REQUIRE_MESSAGE(released.ok(), released.error().message());
	Status set = netlink::setInterfaceMac(nsB.get(), "eth0", *released);
	REQUIRE_MESSAGE(set.ok(), set.error().message());
	REQUIRE(netlink::addAddress(nsB.get(), "eth0", service4).ok());
	REQUIRE(netlink::addAddress(nsB.get(), "eth0", service6).ok());

	AnnounceOptions options;
	options.count = 1;
	REQUIRE(netlink::announceAddress(nsB.get(), "eth0", service4, options).ok());
	REQUIRE(netlink::announceAddress(nsB.get(), "eth0", service6, options).ok());

	// The peer's entry is still right without being touched...
	CHECK(neighbourMac(peer, service4.addressString()) == macA);
	CHECK(neighbourMac(peer, service6.addressString()) == macA);
	// ...and the switch now forwards that MAC to B.
	CHECK(fdbPortSettled(net, macA, portB) == portB);
	CHECK(ping(nsPeer.get(), service4));
	CHECK(ping(nsPeer.get(), service6));
	CHECK(tcpReaches(nsPeer.get(), nsB.get(), service4));
	CHECK(tcpReaches(nsPeer.get(), nsB.get(), service6));
}

TEST_CASE("announce errors name the interface, address and namespace")
{
	test::TestNetwork net;
	const test::TestHost b = net.addHost("hostB", {"198.51.100.3/24", "2001:db8::3/64"});
	UniqueFd nsB = b.open();

	Status noDevice = netlink::announceAddress(nsB.get(), "nosuch0", cidr(kService4));
	REQUIRE_FALSE(noDevice.ok());
	CHECK(noDevice.error().code == ENODEV);
	CHECK(noDevice.error().message().find("interface=nosuch0") != std::string::npos);
	CHECK(noDevice.error().message().find("netns=" + netlink::netnsLabel(nsB.get())) != std::string::npos);

	// The NA is sent from the address: it must be on the interface first.
	Status absent = netlink::announceAddress(nsB.get(), "eth0", cidr(kService6));
	REQUIRE_FALSE(absent.ok());
	CHECK(absent.error().code == EADDRNOTAVAIL);
	CHECK(absent.error().message().find("address=2001:db8::10/64") != std::string::npos);

	AnnounceOptions none;
	none.count = 0;
	CHECK(netlink::announceAddress(nsB.get(), "eth0", cidr(kService4), none).error().code == EINVAL);
}
