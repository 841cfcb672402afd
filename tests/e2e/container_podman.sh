#!/usr/bin/env bash
# Issue 5, podman: as container_runc, through podman. Each host has its own
# podman storage (--root/--runroot under the test's directory) with the
# demo image imported; A runs the demo server as a podman container in its
# namespace, annotated io.ferry.migratable=true, and `ferry migrate
# --container` moves it to B, where B's agent runs the same image, command,
# environment and mounts (podman run --preserve-fds) in B's namespace under
# the same name. The client must verify every byte after the commit and see
# no reset, the container must be gone from A's storage (no process left),
# B's must run and hold the connections, the address must have moved and
# no ferry nft table may remain.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
e2e_containers_init

IMAGE=localhost/ferry-demo:e2e
for host in a b; do
	root=$E2E_WORK/podman-$host/root
	runroot=$E2E_WORK/podman-$host/run
	ct_import_podman_image "$root" "$runroot" "$IMAGE" || e2e_fail "cannot import the image into $host's storage"
	e2e_podman_agent_config "$host" "$root" "$runroot"
done

mapfile -t RUN_ARGS < <(ct_podman_run_args)
AGENT_RUN_ARGS=()
for arg in "${RUN_ARGS[@]}"; do AGENT_RUN_ARGS+=("--podman-run-arg=$arg"); done
e2e_start_podman_agent a "${AGENT_RUN_ARGS[@]}"
# E2E_FAILPOINTS_B: for measurements, e.g. destination.skip_cork_kick=error.
FERRY_FAILPOINTS=${E2E_FAILPOINTS_B:-} e2e_start_podman_agent b "${AGENT_RUN_ARGS[@]}"
e2e_address_add a "$SERVICE_CIDR"

e2e_podman_use a
mapfile -t BIND_ARGS < <(ct_podman_bind_args)
ENV_ARGS=()
while read -r entry; do ENV_ARGS+=(-e "$entry"); done < <(e2e_container_env)
DEMO_DIR=$(dirname "$DEMO_SERVER")
ct_podman run -d --name "$E2E_CONTAINER" --network "ns:/run/netns/$(e2e_ns a)" "${BIND_ARGS[@]}" \
	-v "$E2E_WORK/handoff:$E2E_WORK/handoff" -v "$E2E_WORK/out:$E2E_WORK/out" -v "$DEMO_DIR:$DEMO_DIR:ro" \
	"${ENV_ARGS[@]}" --annotation io.ferry.migratable=true "${RUN_ARGS[@]}" \
	"$IMAGE" "${E2E_SERVER_COMMAND[@]}" >"$E2E_WORK/podman-run.out" 2>"$E2E_WORK/podman-run.err" ||
	e2e_fail "podman run: $(cat "$E2E_WORK/podman-run.err")"
INIT_PID=$(ct_podman inspect --type container "$E2E_CONTAINER" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["Pid"])')
e2e_wait_container_server "$INIT_PID"

e2e_start_client 4 256k
sleep 1.5

e2e_container_migrate podman
# conmon keeps the sockets podman run --preserve-fds passed: see lib.sh.
E2E_NO_DRAIN=1
e2e_check "podman on A no longer knows $E2E_CONTAINER"
e2e_podman_use a
if ct_podman container exists "$E2E_CONTAINER"; then
	e2e_fail "the source container still exists: $(ct_podman ps -a 2>&1)"
fi
e2e_check "podman on B runs $E2E_CONTAINER"
e2e_podman_use b
STATE_B=$(ct_podman inspect --type container "$E2E_CONTAINER") || e2e_fail "podman on B does not know $E2E_CONTAINER"
python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["State"]; sys.exit(0 if s["Status"] == "running" else 1)' <<<"$STATE_B" ||
	e2e_fail "$E2E_CONTAINER on B is not running"
e2e_assert_container_committed 4
[[ $(python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["State"]["Pid"])' <<<"$STATE_B") == "$NEW_SERVER_PID" ]] ||
	e2e_fail "the registered server ($NEW_SERVER_PID) is not the podman container's init"
e2e_say "podman container migration: blackout ${BLACKOUT_US} us, longest client stall ${STALL_MS} ms"
