#!/usr/bin/env bash
# Issue 5, aborts: a runc container's migration fails on B twice, at two
# different points, and each time the container must carry on at A, thawed,
# with the same connections streaming and verified, and nothing may be left
# on B (no container, no lock, no live journal, no work directory).
#   1. the restore fails (destination.restore=error): before B creates the
#      container; A thaws its frozen cgroup and resumes the handed-off
#      workload.
#   2. the container does not start (destination.container_start=error):
#      B had created it with the sockets and taken them out of repair mode
#      under the lock; it puts them back, discards them silently and
#      destroys the container, and A, which had sent the commit, learns the
#      abort from B's status and rolls back.
#   3. a connection the container accepts after discovery (B's prepare
#      sleeps, destination.prepare=sleep(3000), while a second client
#      connects): A finds it after the freeze among the frozen processes'
#      sockets, refuses to go on (destroying the container at commit would
#      reset it) and thaws the container; all five connections carry on.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
e2e_containers_init

RUNC_A=$E2E_WORK/runc-a
RUNC_B=$E2E_WORK/runc-b
NEW_NAME=$E2E_CONTAINER-b
CT_RUNC_ROOT=$RUNC_A ct_runc_track "$E2E_CONTAINER"
CT_RUNC_ROOT=$RUNC_B ct_runc_track "$NEW_NAME"

e2e_start_agent a --runc-root "$RUNC_A" --handoff-socket "$E2E_WORK/handoff/a.sock"
FERRY_FAILPOINTS=destination.restore=error \
	e2e_start_agent b --runc-root "$RUNC_B" --handoff-socket "$E2E_WORK/handoff/b.sock"
e2e_address_add a "$SERVICE_CIDR"

mapfile -t CT_ENV < <(e2e_container_env)
CT_BINDS=("$E2E_WORK/handoff" "$E2E_WORK/out" "$(dirname "$DEMO_SERVER")")
CT_NETNS=$(e2e_ns a) ct_make_runc_bundle "$E2E_WORK/bundle" web "${E2E_SERVER_COMMAND[@]}" ||
	e2e_fail "cannot make the runc bundle"
python3 - "$E2E_WORK/bundle/config.json" "$E2E_WORK/out" <<'EOF'
import json, sys
path, out = sys.argv[1], sys.argv[2]
config = json.load(open(path))
for m in config["mounts"]:
    if m["destination"] == out:
        m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
json.dump(config, open(path, "w"), indent=1)
EOF
CT_RUNC_ROOT=$RUNC_A ct_runc run -d --bundle "$E2E_WORK/bundle" "$E2E_CONTAINER" </dev/null >/dev/null 2>"$E2E_WORK/runc-run.err" ||
	e2e_fail "runc run: $(cat "$E2E_WORK/runc-run.err")"
INIT_PID=$(CT_RUNC_ROOT=$RUNC_A ct_runc state "$E2E_CONTAINER" | e2e_py_stdin_get pid)
e2e_wait_container_server "$INIT_PID"
e2e_start_client 4 256k
sleep 1.5

# After an abort: A's container runs (not paused, its cgroup thawed) with
# the same server process, which serves the same connections; B is empty.
assert_container_rolled_back() { # REASON [SERVER CONNECTIONS]
	local reason=$1 connections=${2:-4} state freezer
	e2e_check "ferry migrate exited 1 (aborted, '$reason')"
	((MIGRATE_STATUS == 1)) || e2e_fail "ferry migrate exited $MIGRATE_STATUS, expected 1"
	e2e_py status "$E2E_WORK/migrate.json" --id "$MIGRATION_ID" --phase aborted --error "$reason" ||
		e2e_fail "the migrate result"
	e2e_snapshot "$CLIENT_PID" "$E2E_WORK/client.out" progress "$E2E_WORK/client-after-abort.json"
	e2e_snapshot "$SERVER_PID" "$E2E_WORK/out/server-a.out" status "$E2E_WORK/server-after-abort.json"

	e2e_check "the container on A runs, thawed, with the same init (pid $SERVER_PID)"
	state=$(CT_RUNC_ROOT=$RUNC_A ct_runc state "$E2E_CONTAINER") || e2e_fail "runc on A lost $E2E_CONTAINER"
	[[ $(e2e_py_stdin_get status <<<"$state") == running ]] || e2e_fail "$E2E_CONTAINER is not running: $state"
	[[ $(e2e_py_stdin_get pid <<<"$state") == "$SERVER_PID" ]] || e2e_fail "$E2E_CONTAINER has another init: $state"
	freezer=$(awk -F: '$2 == "freezer" {print $3}' "/proc/$SERVER_PID/cgroup")
	[[ $(cat "/sys/fs/cgroup/freezer$freezer/freezer.state") == THAWED ]] ||
		e2e_fail "the container's cgroup is $(cat "/sys/fs/cgroup/freezer$freezer/freezer.state")"
	e2e_assert_address_on a "$SERVICE_ADDRESS" b
	e2e_assert_no_lock a b
	E2E_DONE_ID=$MIGRATION_ID e2e_assert_journals_retired a b
	e2e_assert_status a "$MIGRATION_ID" aborted "$reason"
	e2e_assert_status b "$MIGRATION_ID" aborted

	e2e_check "nothing of the container on B: runc knows none, no process, no work directory"
	[[ $(CT_RUNC_ROOT=$RUNC_B ct_runc list -q 2>/dev/null) == "" ]] ||
		e2e_fail "runc on B still has: $(CT_RUNC_ROOT=$RUNC_B ct_runc list)"
	[[ -z $(e2e_workloads_in b) ]] || e2e_fail "processes left in B's namespace: $(e2e_workloads_in b | tr '\n' ' ')"
	[[ ! -e $E2E_WORK/b/containers/$MIGRATION_ID ]] ||
		e2e_fail "B kept $E2E_WORK/b/containers/$MIGRATION_ID: $(ls -R "$E2E_WORK/b/containers/$MIGRATION_ID")"

	sleep 1
	e2e_check "the server on A still serves the same connections after the abort"
	e2e_snapshot "$SERVER_PID" "$E2E_WORK/out/server-a.out" status "$E2E_WORK/server-later.json"
	e2e_py server-grew "$E2E_WORK/server-after-abort.json" "$E2E_WORK/server-later.json" --connections "$connections" ||
		e2e_fail "server on A after the abort"
}

e2e_container_migrate runc --container-name "$NEW_NAME"
assert_container_rolled_back "destination.restore"

e2e_say "restarting B's agent with destination.container_start=error"
e2e_kill_agent b
FERRY_FAILPOINTS=destination.container_start=error \
	e2e_start_agent b --runc-root "$RUNC_B" --handoff-socket "$E2E_WORK/handoff/b.sock"
e2e_container_migrate runc --container-name "$NEW_NAME"
assert_container_rolled_back "destination.container_start"
e2e_check "B created the container before the failed start, and destroyed it"
grep -q "container created.*$MIGRATION_ID" "$E2E_WORK/b/ferryd.log" ||
	e2e_fail "B never created the container: the start failure was not reached"

e2e_say "restarting B's agent with destination.prepare=sleep(3000) and destination.container_start=error"
e2e_kill_agent b
FERRY_FAILPOINTS='destination.prepare=sleep(3000),destination.container_start=error' \
	e2e_start_agent b --runc-root "$RUNC_B" --handoff-socket "$E2E_WORK/handoff/b.sock"
SELECTED_BEFORE=$(grep -c "selected connections" "$E2E_WORK/a/ferryd.log" || true)
E2E_CONTAINER_MIGRATE_BACKGROUND=1 e2e_container_migrate runc --container-name "$NEW_NAME"
for ((i = 0; i < 200; i++)); do
	(($(grep -c "selected connections" "$E2E_WORK/a/ferryd.log" || true) > SELECTED_BEFORE)) && break
	sleep 0.05
done
grep "selected connections" "$E2E_WORK/a/ferryd.log" | tail -n 1 | grep -q "count=5" ||
	e2e_fail "A did not select the container's 5 sockets: $(grep "selected connections" "$E2E_WORK/a/ferryd.log" | tail -n 1)"
: >"$E2E_WORK/client2.out"
ip netns exec "$(e2e_ns c)" "$DEMO_CLIENT" --connect "$SERVER_ADDRESS" --connections 1 --rate 64k \
	>"$E2E_WORK/client2.out" 2>"$E2E_WORK/client2.log" &
CLIENT2_PID=$!
e2e_track "$CLIENT2_PID"
e2e_wait_for "$E2E_WORK/client2.log" "connections open" 10 || e2e_fail "the second client did not connect"
e2e_say "a second client connected during negotiation: pid $CLIENT2_PID"
e2e_migrate_wait
assert_container_rolled_back "not part of the migration" 5
e2e_check "A refused before the lock: B never created the container"
! grep -q "container created.*$MIGRATION_ID" "$E2E_WORK/b/ferryd.log" ||
	e2e_fail "B created the container: the new connection was not refused before the dump"

e2e_stop_client
e2e_check "the client saw every connection alive, zero errors, bytes verified after the aborts"
e2e_py client-report "$E2E_WORK/client.out" --status "$CLIENT_STATUS" --connections 4 \
	--grew-since "$E2E_WORK/client-after-abort.json" || e2e_fail "client report after the aborts"
kill -TERM "$CLIENT2_PID" 2>/dev/null || true
set +e
wait "$CLIENT2_PID"
CLIENT2_STATUS=$?
set -e
e2e_check "the second client: its connection alive, zero errors, bytes verified"
e2e_py client-report "$E2E_WORK/client2.out" --status "$CLIENT2_STATUS" --connections 1 ||
	e2e_fail "report of the second client"
e2e_stop_server "$SERVER_PID" "$E2E_WORK/out/server-a.out"
e2e_check "the server on A ended with zero errors and no reset"
e2e_py server-final "$E2E_WORK/out/server-a.out" --connections 5 || e2e_fail "server on A"
