#!/usr/bin/env bash
# Case 6: B restores only into the namespaces it allows (--allow-netns
# self); a migration that targets another namespace is refused with 403
# before anything was frozen or locked. The source agent accepted the
# migration (202) and learns of the refusal when it negotiates, so the CLI
# reports an aborted migration whose reason carries B's 403 and names the
# namespace, and exits 4 (refused), not 1 (failed): the other side said no.
# `ferry status` tells the same. The connections on A are untouched.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
e2e_rollback_setup
forbidden=fe2e-not-allowed-$$
E2E_TARGET_NETNS=$forbidden e2e_migrate "$SERVICE_CIDR"

e2e_check "ferry migrate exited 4 (refused by the destination), not 1 (failed)"
((MIGRATE_STATUS == 4)) || e2e_fail "ferry migrate exited $MIGRATE_STATUS, expected 4"
e2e_py status "$E2E_WORK/migrate.json" --id "$MIGRATION_ID" --phase aborted --error "status=403" ||
	e2e_fail "the migrate result is not the aborted MigrationStatus with B's 403"
e2e_check "stderr has the reason and points at B's allowlist"
grep -q "^ferry migrate: migration $MIGRATION_ID aborted: .*status=403" "$E2E_WORK/migrate.err" ||
	e2e_fail "no reason on stderr"
grep -q "^ferry migrate: the destination ${AGENT_URL[b]} refused the migration: check its allowlist" \
	"$E2E_WORK/migrate.err" || e2e_fail "no hint about the destination's allowlist on stderr"
e2e_check "ferry status $MIGRATION_ID on A exits 4 too"
code=0
e2e_ferry a status "$MIGRATION_ID" >"$E2E_WORK/status-a.json" 2>"$E2E_WORK/status-a.err" || code=$?
((code == 4)) || e2e_fail "ferry status exited $code, expected 4: $(cat "$E2E_WORK/status-a.err")"
e2e_py status "$E2E_WORK/status-a.json" --id "$MIGRATION_ID" --phase aborted --error "status=403" ||
	e2e_fail "the status of $MIGRATION_ID"
e2e_check "the reason carries the destination's 403"
grep -q -- "status=403" "$E2E_WORK/migrate.err" "$E2E_WORK/migrate.json" ||
	e2e_fail "neither ferry's message nor its JSON carries status=403"
e2e_check "the message names the refused namespace $forbidden"
grep -q -- "$forbidden" "$E2E_WORK/migrate.err" "$E2E_WORK/migrate.json" ||
	e2e_fail "neither ferry's message nor its JSON names $forbidden"
e2e_check "B logged the 403"
grep -q 'path=/v1/incoming status=403' "$E2E_WORK/b/ferryd.log" || e2e_fail "no 403 for /v1/incoming in B's log"

e2e_snapshot "$CLIENT_PID" "$E2E_WORK/client.out" progress "$E2E_WORK/client-after.json"
e2e_snapshot "$SERVER_PID" "$E2E_WORK/server-a.out" status "$E2E_WORK/server-after.json"
e2e_check "the server on A was never asked to stop (no handoff)"
[[ $(e2e_py get "$E2E_WORK/server-after.json" handoffs) == 0 ]] || e2e_fail "the server on A went through a handoff"
e2e_assert_address_on a "$SERVICE_ADDRESS" b
e2e_assert_no_lock a b
e2e_assert_journals_retired a b
sleep 1
e2e_snapshot "$SERVER_PID" "$E2E_WORK/server-a.out" status "$E2E_WORK/server-later.json"
e2e_py server-grew "$E2E_WORK/server-after.json" "$E2E_WORK/server-later.json" --connections 4 ||
	e2e_fail "server on A after the refusal"
e2e_stop_client
e2e_check "the client: every connection alive, zero errors, bytes verified after the refusal"
e2e_py client-report "$E2E_WORK/client.out" --status "$CLIENT_STATUS" --connections 4 \
	--grew-since "$E2E_WORK/client-after.json" || e2e_fail "client report"
e2e_stop_server "$SERVER_PID" "$E2E_WORK/server-a.out"
e2e_py server-final "$E2E_WORK/server-a.out" --connections 4 || e2e_fail "server on A"
