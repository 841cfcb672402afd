#include "crafted_segment.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <cstring>

#include "base/unique_fd.h"
#include "socket_repair.h"

namespace ferry::repair {

namespace {

constexpr size_t kIpv4Header = 20;
constexpr size_t kIpv6Header = 40;
constexpr size_t kTcpHeader = 20;

// Endpoint as a plain IPv4 address, for IPv4 and IPv4-mapped endpoints.
bool asIpv4(const Endpoint &e, uint8_t out[4])
{
	if (e.family == AF_INET) {
		std::memcpy(out, e.address.data(), 4);
		return true;
	}
	if (e.isV4Mapped()) {
		std::memcpy(out, e.address.data() + 12, 4);
		return true;
	}
	return false;
}

uint32_t sumWords(const uint8_t *data, size_t len, uint32_t sum)
{
	for (size_t i = 0; i + 1 < len; i += 2)
		sum += static_cast<uint32_t>(data[i] << 8 | data[i + 1]);
	if (len & 1)
		sum += static_cast<uint32_t>(data[len - 1] << 8);
	return sum;
}

uint16_t foldChecksum(uint32_t sum)
{
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return static_cast<uint16_t>(~sum & 0xffff);
}

void put16(uint8_t *p, uint16_t v)
{
	p[0] = static_cast<uint8_t>(v >> 8);
	p[1] = static_cast<uint8_t>(v);
}

void put32(uint8_t *p, uint32_t v)
{
	p[0] = static_cast<uint8_t>(v >> 24);
	p[1] = static_cast<uint8_t>(v >> 16);
	p[2] = static_cast<uint8_t>(v >> 8);
	p[3] = static_cast<uint8_t>(v);
}

// The segment travels from the peer (remote) to us (local).
void writeTcpHeader(const CraftedSegment &s, uint8_t *tcp)
{
	std::memset(tcp, 0, kTcpHeader);
	put16(tcp + 0, s.flow.remote.port);
	put16(tcp + 2, s.flow.local.port);
	put32(tcp + 4, s.seq);
	put32(tcp + 8, s.ack);
	tcp[12] = (kTcpHeader / 4) << 4;
	tcp[13] = s.flags;
	put16(tcp + 14, s.window);
}

} // namespace

Result<size_t> buildSegment(const CraftedSegment &s, uint8_t *out, size_t capacity)
{
	uint8_t src4[4], dst4[4];
	if (asIpv4(s.flow.remote, src4) && asIpv4(s.flow.local, dst4)) {
		if (capacity < kIpv4Header + kTcpHeader)
			return makeError("buffer too small for a crafted segment", ENOBUFS);
		uint8_t *ip = out;
		std::memset(ip, 0, kIpv4Header);
		ip[0] = 0x45;
		put16(ip + 2, kIpv4Header + kTcpHeader);
		ip[6] = 0x40; // DF
		ip[8] = 64;
		ip[9] = IPPROTO_TCP;
		std::memcpy(ip + 12, src4, 4);
		std::memcpy(ip + 16, dst4, 4);
		put16(ip + 10, foldChecksum(sumWords(ip, kIpv4Header, 0)));

		uint8_t *tcp = out + kIpv4Header;
		writeTcpHeader(s, tcp);
		uint32_t sum = sumWords(src4, 4, 0);
		sum = sumWords(dst4, 4, sum);
		sum += IPPROTO_TCP + kTcpHeader;
		put16(tcp + 16, foldChecksum(sumWords(tcp, kTcpHeader, sum)));
		return kIpv4Header + kTcpHeader;
	}
	if (s.flow.local.family != AF_INET6 || s.flow.remote.family != AF_INET6)
		return makeError("crafted segment needs two IPv4 or two IPv6 endpoints", EAFNOSUPPORT);
	if (capacity < kIpv6Header + kTcpHeader)
		return makeError("buffer too small for a crafted segment", ENOBUFS);
	uint8_t *ip = out;
	std::memset(ip, 0, kIpv6Header);
	ip[0] = 0x60;
	put16(ip + 4, kTcpHeader);
	ip[6] = IPPROTO_TCP;
	ip[7] = 64;
	std::memcpy(ip + 8, s.flow.remote.address.data(), 16);
	std::memcpy(ip + 24, s.flow.local.address.data(), 16);

	uint8_t *tcp = out + kIpv6Header;
	writeTcpHeader(s, tcp);
	uint32_t sum = sumWords(ip + 8, 32, 0);
	sum += kTcpHeader + IPPROTO_TCP;
	put16(tcp + 16, foldChecksum(sumWords(tcp, kTcpHeader, sum)));
	return kIpv6Header + kTcpHeader;
}

Status injectSegment(const CraftedSegment &s)
{
	std::array<uint8_t, kIpv6Header + kTcpHeader> packet{};
	FERRY_TRY_ASSIGN(size_t length, buildSegment(s, packet.data(), packet.size()));
	bool v4 = length == kIpv4Header + kTcpHeader;

	// IPPROTO_RAW implies a caller-built IP header on both families; the
	// source address is the peer's, which only a raw socket may send.
	UniqueFd raw(::socket(v4 ? AF_INET : AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
	if (!raw)
		return errnoError("cannot open a raw socket for a crafted segment");
	uint32_t mark = kCraftedPacketMark;
	if (::setsockopt(raw.get(), SOL_SOCKET, SO_MARK, &mark, sizeof(mark)) < 0)
		return errnoError("cannot mark the crafted segment (SO_MARK)");

	sockaddr_storage to{};
	socklen_t toLength;
	if (v4) {
		auto *in = reinterpret_cast<sockaddr_in *>(&to);
		in->sin_family = AF_INET;
		std::memcpy(&in->sin_addr, packet.data() + 16, 4);
		toLength = sizeof(sockaddr_in);
	} else {
		auto *in6 = reinterpret_cast<sockaddr_in6 *>(&to);
		in6->sin6_family = AF_INET6;
		std::memcpy(&in6->sin6_addr, s.flow.local.address.data(), 16);
		in6->sin6_scope_id = s.flow.local.scopeId;
		toLength = sizeof(sockaddr_in6);
	}
	ssize_t sent = ::sendto(raw.get(), packet.data(), length, 0, reinterpret_cast<sockaddr *>(&to), toLength);
	if (sent < 0)
		return errnoError("cannot send the crafted segment");
	if (static_cast<size_t>(sent) != length)
		return makeError("crafted segment sent short", EIO);
	return {};
}

} // namespace ferry::repair
