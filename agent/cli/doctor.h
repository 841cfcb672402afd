// `ferry doctor`: can this host take part in a migration?
//
// Every check runs for real, in the caller's network namespace and with
// the caller's privileges (run it as ferryd runs): the TCP repair probe
// (repair::probeKernelFeatures), capget(2) for CAP_NET_ADMIN and
// CAP_SYS_PTRACE, a netlink listing of ferry's nftables locks, a
// pidfd_getfd(2) of one of our own fds, IPv6 sockets, `criu check`, and
// GET /v1/info on the agent with the given credentials. Nothing is changed
// on the host: the probes open sockets that send no packet and close them.
#pragma once

#include <vector>

#include "api/agent_client.h"
#include "command_line.h"
#include "output.h"

namespace ferry::cli {

// `credentials` is what main() could load; when it failed (an unreadable
// --token-file), the agent check fails with that error.
std::vector<DoctorCheck> runDoctorChecks(const CommandLine &line, const Result<api::AgentCredentials> &credentials);

} // namespace ferry::cli
