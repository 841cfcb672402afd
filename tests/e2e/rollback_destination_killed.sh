#!/usr/bin/env bash
# Case 4b: the destination agent is killed (SIGKILL) while it restores the
# image (destination.restore sleeps 3 s, so the kill lands mid-stream). The
# source must see the upload fail, abort, and give the connections back to
# the server on A. B is then restarted on the same state directory: its
# recovery sweeps its lock and retires the journal, and it reports the
# migration aborted.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
FAILPOINTS_B='destination.restore=sleep(3000)' e2e_rollback_setup
e2e_migrate_start "$SERVICE_CIDR"
e2e_check "B took the migration and locked its flows before the kill"
e2e_wait_for "$E2E_WORK/b/ferryd.log" "flows locked" 10 || e2e_fail "B never locked the migration's flows"
sleep 1 # inside B's 3 s restore
e2e_kill_agent b
e2e_migrate_wait
E2E_AGENT_PORT=${AGENT_PORT[b]} e2e_start_agent b
e2e_assert_rolled_back "$SERVICE_ADDRESS" "$(printf '%s' "${AGENT_URL[b]}" | sed 's|^http://||')"
E2E_DONE_ID=$MIGRATION_ID e2e_assert_journals_retired b
e2e_assert_status b "$MIGRATION_ID" aborted
