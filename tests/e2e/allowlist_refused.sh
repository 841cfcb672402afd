#!/usr/bin/env bash
# Case 6: B restores only into the namespaces it allows (--allow-netns
# self); a migration that targets another namespace is refused with 403
# before anything was frozen or locked. The source agent accepted the
# migration (202) and learns of the refusal when it negotiates, so the CLI
# reports an aborted migration (exit 1) whose reason carries B's 403 and
# names the namespace; the connections on A are untouched.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
e2e_rollback_setup
forbidden=fe2e-not-allowed-$$
E2E_TARGET_NETNS=$forbidden e2e_migrate "$SERVICE_CIDR"

e2e_check "ferry migrate exited 1 (aborted: refused by the destination)"
((MIGRATE_STATUS == 1)) || e2e_fail "ferry migrate exited $MIGRATE_STATUS, expected 1"
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
