#include "flow.h"

#include <arpa/inet.h>

#include <charconv>
#include <cstring>

namespace ferry {

namespace {

Result<uint16_t> parsePort(std::string_view text, std::string_view whole)
{
	uint16_t port = 0;
	auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), port);
	if (text.empty() || ec != std::errc() || end != text.data() + text.size())
		return makeError("endpoint '" + std::string(whole) + "' has no valid port", EINVAL);
	return port;
}

} // namespace

Result<Endpoint> Endpoint::fromSockaddr(const sockaddr *sa, socklen_t len)
{
	Endpoint e;
	if (sa->sa_family == AF_INET && len >= sizeof(sockaddr_in)) {
		auto *in = reinterpret_cast<const sockaddr_in *>(sa);
		e.family = AF_INET;
		std::memcpy(e.address.data(), &in->sin_addr, 4);
		e.port = ntohs(in->sin_port);
		return e;
	}
	if (sa->sa_family == AF_INET6 && len >= sizeof(sockaddr_in6)) {
		auto *in6 = reinterpret_cast<const sockaddr_in6 *>(sa);
		e.family = AF_INET6;
		std::memcpy(e.address.data(), &in6->sin6_addr, 16);
		e.port = ntohs(in6->sin6_port);
		e.scopeId = in6->sin6_scope_id;
		return e;
	}
	return makeError("socket address of family " + std::to_string(sa->sa_family) + " is not IPv4 or IPv6", EAFNOSUPPORT);
}

Result<Endpoint> Endpoint::parse(std::string_view text)
{
	Endpoint e;
	std::string host;
	std::string_view portText;
	if (!text.empty() && text.front() == '[') {
		size_t close = text.find(']');
		if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
			return makeError("endpoint '" + std::string(text) + "' is not [address]:port", EINVAL);
		host = std::string(text.substr(1, close - 1));
		portText = text.substr(close + 2);
		e.family = AF_INET6;
	} else {
		size_t colon = text.rfind(':');
		if (colon == std::string_view::npos)
			return makeError("endpoint '" + std::string(text) + "' is not address:port", EINVAL);
		host = std::string(text.substr(0, colon));
		portText = text.substr(colon + 1);
		e.family = AF_INET;
	}
	FERRY_TRY_ASSIGN(e.port, parsePort(portText, text));
	if (::inet_pton(e.family, host.c_str(), e.address.data()) != 1)
		return makeError("endpoint '" + std::string(text) + "' has no valid address", EINVAL);
	return e;
}

sockaddr_storage Endpoint::toSockaddr(socklen_t &len) const
{
	sockaddr_storage ss{};
	if (family == AF_INET) {
		auto *in = reinterpret_cast<sockaddr_in *>(&ss);
		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		std::memcpy(&in->sin_addr, address.data(), 4);
		len = sizeof(sockaddr_in);
	} else {
		auto *in6 = reinterpret_cast<sockaddr_in6 *>(&ss);
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons(port);
		std::memcpy(&in6->sin6_addr, address.data(), 16);
		in6->sin6_scope_id = scopeId;
		len = sizeof(sockaddr_in6);
	}
	return ss;
}

bool Endpoint::isV4Mapped() const
{
	static constexpr uint8_t prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
	return family == AF_INET6 && std::memcmp(address.data(), prefix, sizeof(prefix)) == 0;
}

std::string Endpoint::addressString() const
{
	if (family != AF_INET && family != AF_INET6)
		return "*";
	char buf[INET6_ADDRSTRLEN] = {};
	::inet_ntop(family, address.data(), buf, sizeof(buf));
	return buf;
}

std::string Endpoint::toString() const
{
	if (family == AF_INET6)
		return "[" + addressString() + "]:" + std::to_string(port);
	return addressString() + ":" + std::to_string(port);
}

std::string FlowId::toString() const
{
	return local.toString() + "->" + remote.toString();
}

} // namespace ferry
