#include "cidr.h"

#include <arpa/inet.h>

#include <charconv>

namespace ferry::api {

Result<Cidr> Cidr::parse(std::string_view text, HostBits hostBits)
{
	auto bad = [&](std::string_view why) {
		return makeError("'" + std::string(text) + "' is not a CIDR: " + std::string(why), EINVAL);
	};
	size_t slash = text.find('/');
	if (slash == std::string_view::npos)
		return bad("no /prefix");
	std::string host(text.substr(0, slash));
	std::string_view prefixText = text.substr(slash + 1);

	Cidr cidr;
	if (::inet_pton(AF_INET, host.c_str(), cidr.address.data()) == 1)
		cidr.family = AF_INET;
	else if (::inet_pton(AF_INET6, host.c_str(), cidr.address.data()) == 1)
		cidr.family = AF_INET6;
	else
		return bad("no valid address");

	unsigned prefix = 0;
	auto [end, ec] = std::from_chars(prefixText.data(), prefixText.data() + prefixText.size(), prefix);
	unsigned maxPrefix = cidr.family == AF_INET ? 32 : 128;
	if (prefixText.empty() || ec != std::errc() || end != prefixText.data() + prefixText.size() ||
	    prefix > maxPrefix)
		return bad("prefix length must be 0.." + std::to_string(maxPrefix));
	cidr.prefixLength = static_cast<uint8_t>(prefix);

	if (hostBits == HostBits::MustBeZero) {
		Cidr network = cidr;
		for (unsigned bit = prefix; bit < maxPrefix; ++bit)
			network.address[bit / 8] &= static_cast<uint8_t>(~(0x80u >> (bit % 8)));
		if (network.address != cidr.address)
			return bad("host bits are set (the range would be " + network.toString() + ")");
	}
	return cidr;
}

bool Cidr::contains(int otherFamily, const std::array<uint8_t, 16> &otherAddress) const
{
	if (family == AF_UNSPEC || otherFamily != family)
		return false;
	unsigned fullBytes = prefixLength / 8;
	for (unsigned i = 0; i < fullBytes; ++i) {
		if (address[i] != otherAddress[i])
			return false;
	}
	unsigned restBits = prefixLength % 8;
	if (restBits == 0)
		return true;
	auto mask = static_cast<uint8_t>(0xffu << (8 - restBits));
	return (address[fullBytes] & mask) == (otherAddress[fullBytes] & mask);
}

std::string Cidr::toString() const
{
	if (family != AF_INET && family != AF_INET6)
		return "";
	char buf[INET6_ADDRSTRLEN] = {};
	::inet_ntop(family, address.data(), buf, sizeof(buf));
	return std::string(buf) + "/" + std::to_string(prefixLength);
}

} // namespace ferry::api
