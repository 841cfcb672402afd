#!/usr/bin/env bash
# Issue 5, runc: the demo server runs as a runc container in A's namespace
# (its own runc root per host, annotated io.ferry.migratable=true) and
# hands its state over through A's handoff socket, bound into the
# container. Four connections stream checksummed data both ways while
# `ferry migrate --container` moves it to B: B's agent starts the same
# bundle in B's namespace with the restored connections as fds 3..
# The client must verify every byte after the commit and see no reset,
# the source container must be gone (runc says so, no process left), the
# new one must run and hold the connections, the address must have moved
# and no ferry nft table may remain.
#
# With E2E_KILL_B_AFTER_START=1, B's agent is killed (SIGKILL) once the
# container has started and "committed" is durable, before its unlock
# (destination.after_start sleeps), and restarted on the same state
# directory: its recovery must unlock and keep the container, A must learn
# Committed from it, and every check below must hold as after a plain
# commit.
#
# The destination container gets another name (--container-name): both
# "hosts" share this machine's cgroup tree, where runc derives a cgroup
# from the name, and the source's is frozen until the commit.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
e2e_containers_init

RUNC_A=$E2E_WORK/runc-a
RUNC_B=$E2E_WORK/runc-b
NEW_NAME=$E2E_CONTAINER-b
CT_RUNC_ROOT=$RUNC_A ct_runc_track "$E2E_CONTAINER"
CT_RUNC_ROOT=$RUNC_B ct_runc_track "$NEW_NAME"

e2e_start_agent a --runc-root "$RUNC_A" --handoff-socket "$E2E_WORK/handoff/a.sock"
# E2E_FAILPOINTS_B: for measurements, e.g. destination.skip_cork_kick=error.
FAILPOINTS_B=${E2E_FAILPOINTS_B:-}
[[ -n ${E2E_KILL_B_AFTER_START:-} ]] && FAILPOINTS_B='destination.after_start=sleep(4000)'
FERRY_FAILPOINTS=$FAILPOINTS_B e2e_start_agent b --runc-root "$RUNC_B" --handoff-socket "$E2E_WORK/handoff/b.sock"
e2e_address_add a "$SERVICE_CIDR"

mapfile -t CT_ENV < <(e2e_container_env)
CT_BINDS=("$E2E_WORK/handoff" "$E2E_WORK/out" "$(dirname "$DEMO_SERVER")")
CT_NETNS=$(e2e_ns a) ct_make_runc_bundle "$E2E_WORK/bundle" web "${E2E_SERVER_COMMAND[@]}" ||
	e2e_fail "cannot make the runc bundle"
# The output directory is written from inside: bind it read-write.
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

if [[ -n ${E2E_KILL_B_AFTER_START:-} ]]; then
	E2E_CONTAINER_MIGRATE_BACKGROUND=1 e2e_container_migrate runc --container-name "$NEW_NAME"
	e2e_wait_for "$E2E_WORK/b/ferryd.log" "container started" 20 || e2e_fail "B never started the container"
	sleep 1 # inside B's 4 s failpoint: "committed" is journaled, the flows still locked
	e2e_kill_agent b
	E2E_AGENT_PORT=${AGENT_PORT[b]} e2e_start_agent b --runc-root "$RUNC_B" --handoff-socket "$E2E_WORK/handoff/b.sock"
	e2e_migrate_wait
else
	e2e_container_migrate runc --container-name "$NEW_NAME"
fi
e2e_check "runc on A no longer knows $E2E_CONTAINER"
if CT_RUNC_ROOT=$RUNC_A ct_runc state "$E2E_CONTAINER" >/dev/null 2>&1; then
	e2e_fail "the source container still exists: $(CT_RUNC_ROOT=$RUNC_A ct_runc state "$E2E_CONTAINER")"
fi
e2e_check "runc on B runs $NEW_NAME"
STATE_B=$(CT_RUNC_ROOT=$RUNC_B ct_runc state "$NEW_NAME") || e2e_fail "runc on B does not know $NEW_NAME"
[[ $(e2e_py_stdin_get status <<<"$STATE_B") == running ]] || e2e_fail "$NEW_NAME on B is not running: $STATE_B"
e2e_assert_container_committed 4
[[ $(e2e_py_stdin_get pid <<<"$STATE_B") == "$NEW_SERVER_PID" ]] ||
	e2e_fail "the registered server ($NEW_SERVER_PID) is not $NEW_NAME's init: $STATE_B"
e2e_say "runc container migration: blackout ${BLACKOUT_US} us, longest client stall ${STALL_MS} ms"
