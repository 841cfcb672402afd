#include "lock_table.h"

#include <linux/netfilter.h>

#include <cstring>

namespace ferry::netlock {

namespace {

constexpr std::string_view kCommentPrefix = "ferry migration=";
constexpr std::string_view kCreatedField = " created=";
constexpr const char *kTimeFormat = "%Y-%m-%dT%H:%M:%SZ";

// nft's datatype ids (nftables src/datatype.h); stable, they are part of
// what nft stores in the kernel.
constexpr uint32_t kTypeIpv4Addr = 7;
constexpr uint32_t kTypeIpv6Addr = 8;
constexpr uint32_t kTypeInetService = 13;
constexpr uint32_t kTypeBits = 6;

bool idCharacter(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-';
}

// An endpoint reduced to what is on the wire: v4-mapped IPv6 becomes IPv4.
struct WireEndpoint {
	int family;
	const uint8_t *address;
	uint16_t port;
};

WireEndpoint wireEndpoint(const Endpoint &e)
{
	if (e.family == AF_INET6 && e.isV4Mapped())
		return {AF_INET, e.address.data() + 12, e.port};
	return {e.family, e.address.data(), e.port};
}

// Appends an address and a port, each padded to a 32-bit register.
size_t putField(uint8_t *out, const WireEndpoint &e)
{
	size_t addressLength = e.family == AF_INET ? 4 : 16;
	std::memcpy(out, e.address, addressLength);
	out[addressLength] = static_cast<uint8_t>(e.port >> 8);
	out[addressLength + 1] = static_cast<uint8_t>(e.port & 0xff);
	// bytes addressLength + 2 and + 3 stay zero: register padding
	return addressLength + 4;
}

} // namespace

Status validateMigrationId(std::string_view id)
{
	if (id.empty())
		return makeError("migration id is empty", EINVAL);
	if (id.size() > kMaxMigrationIdLength)
		return makeError("migration id is " + std::to_string(id.size()) + " characters long, more than the " +
		                     std::to_string(kMaxMigrationIdLength) + " a lock table name allows",
		                 EINVAL);
	for (char c : id) {
		if (!idCharacter(c)) {
			return makeError("migration id '" + std::string(id) +
			                     "' has a character outside [A-Za-z0-9_-]; it names an nftables table",
			                 EINVAL);
		}
	}
	return {};
}

std::string tableName(std::string_view id)
{
	return std::string(kTablePrefix) + std::string(id);
}

std::string tableComment(std::string_view id, std::time_t created)
{
	std::tm utc{};
	::gmtime_r(&created, &utc);
	char when[32];
	std::strftime(when, sizeof(when), kTimeFormat, &utc);
	return std::string(kCommentPrefix) + std::string(id) + std::string(kCreatedField) + when;
}

std::optional<TableComment> parseTableComment(std::string_view comment)
{
	if (comment.substr(0, kCommentPrefix.size()) != kCommentPrefix)
		return std::nullopt;
	std::string_view rest = comment.substr(kCommentPrefix.size());
	size_t space = rest.find(kCreatedField);
	if (space == std::string_view::npos)
		return std::nullopt;
	std::string_view id = rest.substr(0, space);
	if (!validateMigrationId(id).ok())
		return std::nullopt;
	std::string when(rest.substr(space + kCreatedField.size()));
	std::tm utc{};
	const char *end = ::strptime(when.c_str(), kTimeFormat, &utc);
	if (!end || *end != '\0')
		return std::nullopt;
	return TableComment{std::string(id), ::timegm(&utc)};
}

std::optional<TableComment> ferryTableOwner(uint32_t family, std::string_view name, std::string_view comment)
{
	if (family != NFPROTO_INET)
		return std::nullopt;
	if (name.substr(0, kTablePrefix.size()) != kTablePrefix)
		return std::nullopt;
	std::optional<TableComment> parsed = parseTableComment(comment);
	if (!parsed || name.substr(kTablePrefix.size()) != parsed->migrationId)
		return std::nullopt;
	return parsed;
}

Result<FlowKey> encodeFlowKey(const FlowId &flow)
{
	WireEndpoint local = wireEndpoint(flow.local);
	WireEndpoint remote = wireEndpoint(flow.remote);
	if ((local.family != AF_INET && local.family != AF_INET6) || (remote.family != AF_INET && remote.family != AF_INET6))
		return makeError("flow endpoint is neither IPv4 nor IPv6", EINVAL).at("flow", flow.toString());
	if (local.family != remote.family)
		return makeError("flow mixes IPv4 and IPv6 endpoints", EINVAL).at("flow", flow.toString());
	if (local.port == 0 || remote.port == 0)
		return makeError("flow has port 0, which no connected socket has", EINVAL).at("flow", flow.toString());
	FlowKey key;
	key.family = local.family;
	size_t used = putField(key.bytes.data(), local);
	used += putField(key.bytes.data() + used, remote);
	key.length = used;
	return key;
}

uint32_t setKeyType(int family)
{
	uint32_t address = family == AF_INET ? kTypeIpv4Addr : kTypeIpv6Addr;
	uint32_t type = address;
	type = (type << kTypeBits) | kTypeInetService;
	type = (type << kTypeBits) | address;
	type = (type << kTypeBits) | kTypeInetService;
	return type;
}

} // namespace ferry::netlock
