// Allowlist: where this agent may restore connections (issue 4, "Access").
//
// A destination agent restores sockets into a network namespace, puts
// service addresses on interfaces there and binds sockets to local
// addresses. Each of these is checked against the operator's lists before
// anything is prepared: the API refuses a PrepareRequest that reaches
// outside them with 403 and the reason; the engine checks again.
//
// Empty lists allow nothing: an agent restores nowhere until its
// configuration says where.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "base/error.h"
#include "cidr.h"
#include "migration/migration_service.h"

namespace ferry::api {

struct Allowlist {
	// Target netns specs, as openNetns() takes them, matched with
	// fnmatch(3) and FNM_PATHNAME ("ferry-*", "/run/netns/ct-*"). The
	// agent's own namespace is spelled "self" (an empty spec means "self").
	std::vector<std::string> netns;
	// Interfaces in the target netns that may receive a service address,
	// matched with fnmatch(3) ("eth0", "veth-*").
	std::vector<std::string> interfaces;
	// Ranges that service addresses and restored sockets' local addresses
	// must lie in.
	std::vector<Cidr> addresses;
};

// Whether `request` stays inside `allow`. Checks the target netns, each
// address move's target interface and address, and each connection's
// local address (a listener bound to the wildcard address 0.0.0.0 or ::
// needs only the netns). EACCES with the reason and the offending field
// otherwise, e.g. "addresses[1].cidr 203.0.113.7/24 is outside the allowed
// address ranges".
Status checkAllowed(const Allowlist &allow, const migration::PrepareRequest &request);

// fnmatch(3) with FNM_PATHNAME; exposed for the tests.
bool matchesAny(const std::vector<std::string> &patterns, std::string_view name);

} // namespace ferry::api
