#!/usr/bin/env bash
# Case 4f: the source agent is killed with SIGKILL during the dump
# (source.dump sleeps 3 s; the kill lands 1 s in), with the workload
# stopped at its safe point, the flows locked on A and the sockets in
# repair mode. ferryd on A is restarted on the same state directory and
# port, without the failpoint. Its recovery must give the connections back
# to the server on A intact, remove the lock, retire the journal, and B
# must end up aborted too.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
FAILPOINTS_A='source.dump=sleep(3000)' e2e_rollback_setup
e2e_migrate_start "$SERVICE_CIDR"
e2e_check "A locked the flows (the dump is under way) before the kill"
e2e_wait_for "$E2E_WORK/a/ferryd.log" "flows locked" 10 || e2e_fail "A never locked the migration's flows"
sleep 1 # inside A's 3 s dump
e2e_kill_agent a
e2e_migrate_wait
# The CLI printed no status (it lost the agent): the id is in A's log.
MIGRATION_ID=${MIGRATION_ID:-$(sed -n 's/.*migration started migration=\([^ ]*\).*/\1/p' "$E2E_WORK/a/ferryd.log" | head -n 1)}
e2e_check "ferry migrate, which lost its agent, exited 3 (cannot reach the agent) and named the migration"
((MIGRATE_STATUS == 3)) || e2e_fail "ferry migrate exited $MIGRATE_STATUS, expected 3"
grep -q "ferry status $MIGRATION_ID" "$E2E_WORK/migrate.err" || e2e_fail "ferry migrate did not say how to follow $MIGRATION_ID"
e2e_snapshot "$SERVER_PID" "$E2E_WORK/server-a.out" status "$E2E_WORK/server-agent-dead.json"
e2e_say "server on A while its agent is dead: $(cat "$E2E_WORK/server-agent-dead.json")"
E2E_AGENT_PORT=${AGENT_PORT[a]} e2e_start_agent a
e2e_wait_for "$E2E_WORK/a/ferryd.log" "ferryd ready" 10 || e2e_fail "ferryd on A did not come back"

# The CLI that followed the migration lost its agent. What the user sees
# afterwards is `ferry status`, which must say aborted, exit 1: the rest of
# the rollback assertions take the place of `ferry migrate`'s result.
e2e_ferry a status "$MIGRATION_ID" >"$E2E_WORK/migrate.json" 2>"$E2E_WORK/migrate.err" && MIGRATE_STATUS=0 || MIGRATE_STATUS=$?
e2e_assert_rolled_back "$SERVICE_ADDRESS" "restart"
e2e_assert_status b "$MIGRATION_ID" aborted
E2E_DONE_ID=$MIGRATION_ID e2e_assert_journals_retired b
