// Looks one socket up with sock_diag to learn what no getsockopt tells:
// whether it carries TCP-MD5 keys (INET_DIAG_MD5SIG, reported only to
// CAP_NET_ADMIN). Works in the calling thread's network namespace.
#pragma once

#include "base/error.h"
#include "base/flow.h"

namespace ferry::repair {

struct DiagFacts {
	bool found = false; // the kernel knows a socket with this 4-tuple here
	bool md5 = false;   // it has at least one TCP-MD5 key
};

// `family` is the socket's own family (AF_INET6 for IPv4-mapped flows).
// For a listener pass a flow whose remote is unspecified.
Result<DiagFacts> lookupDiag(int family, const FlowId &flow);

} // namespace ferry::repair
