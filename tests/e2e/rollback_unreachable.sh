#!/usr/bin/env bash
# Case 4a: the destination is unreachable (--to a port of B where nothing
# listens). The migration aborts before anything was frozen for good, and
# the connections carry on at A as if nothing had happened.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
e2e_rollback_setup
# Port 1: below the ephemeral range, so never ferryd's port 0 pick.
E2E_TO=http://198.51.100.2:1 e2e_migrate "$SERVICE_CIDR"
e2e_assert_rolled_back "$SERVICE_ADDRESS" "198.51.100.2:1"
