#!/usr/bin/env bash
# Case 4e: the commit comes too late. B allows 1 s between lock and commit;
# A waits 2.5 s before it sends the commit (source.before_commit), after it
# has already taken the service address down. B aborts at its deadline and
# refuses the commit; A must abort, put the address back, and give the
# connections back to the server on A.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
AGENT_ARGS_B=(--commit-timeout-ms 1000)
FAILPOINTS_A='source.before_commit=sleep(2500)' e2e_rollback_setup
e2e_migrate "$SERVICE_CIDR"
e2e_assert_rolled_back "$SERVICE_ADDRESS" "commit"
E2E_DONE_ID=$MIGRATION_ID e2e_assert_journals_retired b
e2e_assert_status b "$MIGRATION_ID" aborted
