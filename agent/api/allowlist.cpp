#include "allowlist.h"

#include <fnmatch.h>

#include <algorithm>

namespace ferry::api {

namespace {

Error refused(std::string what)
{
	return makeError(std::move(what), EACCES);
}

bool isWildcard(const Endpoint &e)
{
	return std::all_of(e.address.begin(), e.address.begin() + (e.family == AF_INET ? 4 : 16),
			   [](uint8_t b) { return b == 0; });
}

bool inRanges(const std::vector<Cidr> &ranges, const Endpoint &e)
{
	return std::any_of(ranges.begin(), ranges.end(), [&](const Cidr &r) { return r.contains(e); });
}

} // namespace

bool matchesAny(const std::vector<std::string> &patterns, std::string_view name)
{
	std::string n(name);
	return std::any_of(patterns.begin(), patterns.end(), [&](const std::string &pattern) {
		return ::fnmatch(pattern.c_str(), n.c_str(), FNM_PATHNAME) == 0;
	});
}

Status checkAllowed(const Allowlist &allow, const migration::PrepareRequest &request)
{
	std::string netns = request.targetNetns.empty() ? std::string("self") : request.targetNetns;
	// "a/../b" could match "a/*" and still name another namespace.
	if (netns.find("..") != std::string::npos)
		return refused("targetNetns '" + netns + "' contains '..'");
	if (!matchesAny(allow.netns, netns))
		return refused("targetNetns '" + netns + "' is not in the allowed namespaces");

	for (size_t i = 0; i < request.addresses.size(); ++i) {
		const auto &move = request.addresses[i];
		std::string field = "addresses[" + std::to_string(i) + "]";
		if (!matchesAny(allow.interfaces, move.targetInterface))
			return refused(field + ".targetInterface '" + move.targetInterface +
				       "' is not in the allowed interfaces");
		auto cidr = Cidr::parse(move.cidr, Cidr::HostBits::Allowed);
		if (!cidr)
			return makeError(field + ".cidr: " + cidr.error().what, EINVAL);
		bool inside = std::any_of(allow.addresses.begin(), allow.addresses.end(),
					  [&](const Cidr &r) { return r.containsAddressOf(*cidr); });
		if (!inside)
			return refused(field + ".cidr " + move.cidr + " is outside the allowed address ranges");
	}

	for (size_t i = 0; i < request.connections.size(); ++i) {
		const auto &c = request.connections[i];
		const Endpoint &local = c.flow.local;
		if (c.state == "LISTEN" && isWildcard(local))
			continue;
		if (!inRanges(allow.addresses, local))
			return refused("connections[" + std::to_string(i) + "].flow.local " + local.toString() +
				       " is outside the allowed address ranges");
	}
	return {};
}

} // namespace ferry::api
