#!/usr/bin/env bash
# shellcheck shell=bash disable=SC2015  # "A && B || e2e_fail": e2e_fail exits
# The OCI hook against a real ferryd (issue 5), one agent on host A:
#   (a) ferry-oci-hook fed a crafted OCI state for a real process: poststart
#       registers it (GET /v1/containers shows the right fields), a state
#       without the annotation registers nothing, poststop deregisters;
#   (c) a real `runc run -d` of a busybox container whose config.json
#       carries the hook at poststart and poststop: listed while it runs,
#       gone after `runc delete --force`;
#   (e) podman with configs/hooks.d/ferry.json (one args list for both
#       stages: the hook reads the stage from the state's status): an
#       annotated container is listed, an unannotated one is not, and
#       `podman rm -f` deregisters it;
#   (d) the registry survives an agent restart (SIGKILL, same state dir);
#   (b) fail-open: a listener that never answers, a port nobody listens
#       on, the agent killed, bad stdin: the hook exits 0 within its
#       timeout and says why on stderr, and the agent (when up) is alive.
#
#   bash oci_hook.sh FERRYD FERRY DEMO_SERVER DEMO_CLIENT FERRY_OCI_HOOK
#
# runc and the hooks it runs stay in the host's mount namespace and enter
# host A's network namespace only (nsenter --net): `ip netns exec` would
# remount /sys and hide the cgroup mounts runc needs. runc keeps its state
# under the test's directory (--root); the EXIT trap deletes the container
# before lib.sh's cleanup removes namespaces and files.
. "$(dirname "$0")/lib.sh"

HOOK=$(realpath "${5:-}") || { echo "usage: $0 FERRYD FERRY DEMO_SERVER DEMO_CLIENT FERRY_OCI_HOOK" >&2; exit 2; }
[[ -x $HOOK ]] || { echo "[e2e oci_hook] $HOOK is not executable" >&2; exit 1; }
e2e_init "$1" "$2" "$3" "$4"

RUNC_ROOT=$E2E_WORK/runc
CONTAINER=fe2e$$-web
RUNC_CREATED=""
PODMAN_USED=""
# podman with storage of its own under the test's directory, no systemd.
PODMAN=(podman --root "$E2E_WORK/podman/root" --runroot "$E2E_WORK/podman/run" --tmpdir "$E2E_WORK/podman/run/tmp"
	--cgroup-manager cgroupfs --events-backend file --hooks-dir "$E2E_WORK/hooks.d")

oci_cleanup() {
	local status=$?
	set +e
	if [[ -n $RUNC_CREATED ]]; then
		nsenter --net="/run/netns/$(e2e_ns a)" runc --root "$RUNC_ROOT" delete --force "$CONTAINER" >/dev/null 2>&1
	fi
	if [[ -n $PODMAN_USED ]]; then
		nsenter --net="/run/netns/$(e2e_ns a)" "${PODMAN[@]}" rm -f -a >/dev/null 2>&1
	fi
	(exit "$status")
	e2e_cleanup
}
trap oci_cleanup EXIT

e2e_start_agent a
URL=${AGENT_URL[a]}
printf 'Authorization: Bearer %s\n' "$(cat "$TOKEN")" >"$E2E_WORK/auth-header"

# The hook as a runtime runs it, from host A's network namespace, state on
# stdin. hook_run STDIN_FILE ARGS...: sets HOOK_STATUS, HOOK_MS; stderr in
# WORK/hook.err.
hook_run() {
	local input=$1 start end
	shift
	start=$(date +%s%N)
	set +e
	ip netns exec "$(e2e_ns a)" "$HOOK" "$@" <"$input" >"$E2E_WORK/hook.out" 2>"$E2E_WORK/hook.err"
	HOOK_STATUS=$?
	set -e
	end=$(date +%s%N)
	HOOK_MS=$(((end - start) / 1000000))
}

# GET PATH from the agent into WORK/reply; prints the HTTP status.
agent_get() {
	e2e_in a curl -sS -o "$E2E_WORK/reply" -w '%{http_code}' -H @"$E2E_WORK/auth-header" --max-time 10 "$URL$1"
}

# listed_ids: the ids GET /v1/containers returns, one per line.
listed_ids() {
	local code
	code=$(agent_get /v1/containers) || e2e_fail "GET /v1/containers failed"
	[[ $code == 200 ]] || e2e_fail "GET /v1/containers answered $code: $(cat "$E2E_WORK/reply")"
	python3 -c 'import json,sys; [print(c["id"]) for c in json.load(open(sys.argv[1]))["containers"]]' "$E2E_WORK/reply"
}

# check_entry ID PID RUNTIME BUNDLE: GET /v1/containers/ID has those fields.
check_entry() {
	local code
	code=$(agent_get "/v1/containers/$1") || e2e_fail "GET /v1/containers/$1 failed"
	[[ $code == 200 ]] || e2e_fail "GET /v1/containers/$1 answered $code: $(cat "$E2E_WORK/reply")"
	python3 - "$E2E_WORK/reply" "$@" <<'EOF' || e2e_fail "the entry of $1: $(cat "$E2E_WORK/reply")"
import json, sys
path, cid, pid, runtime, bundle = sys.argv[1:6]
c = json.load(open(path))
want = {"id": cid, "name": cid, "pid": int(pid), "runtime": runtime, "bundle": bundle,
        "netns": "pid:" + pid, "status": "running", "cgroup": ""}
for key, value in want.items():
    if c.get(key) != value:
        sys.exit(f"{key}: {c.get(key)!r}, expected {value!r}")
if c["annotations"].get("io.ferry.migratable") != "true":
    sys.exit("annotations: io.ferry.migratable missing")
EOF
}

agent_alive() {
	kill -0 "${AGENT_PID[a]}" 2>/dev/null || e2e_fail "ferryd died after $1"
	[[ $(agent_get /v1/info) == 200 ]] || e2e_fail "GET /v1/info failed after $1"
}

state_json() { # ID STATUS PID [ANNOTATED true|false]
	local annotations='"io.ferry.migratable":"true","team":"edge"'
	[[ ${4:-true} == true ]] || annotations='"team":"edge"'
	printf '{"ociVersion":"1.0.2","id":"%s","status":"%s","pid":%s,"bundle":"%s","annotations":{%s}}\n' \
		"$1" "$2" "$3" "$E2E_WORK/bundle-$1" "$annotations"
}

HOOK_ARGS=(--agent "$URL" --token-file "$TOKEN" --runtime runc)

# --- (a) a crafted state for a real process -------------------------------
sleep 1000 &
WORKLOAD=$!
e2e_track "$WORKLOAD"
state_json crafted-1 created "$WORKLOAD" >"$E2E_WORK/state-start.json"
hook_run "$E2E_WORK/state-start.json" "${HOOK_ARGS[@]}" poststart
e2e_check "poststart of crafted-1 (pid $WORKLOAD): exit 0 in ${HOOK_MS} ms, nothing on stderr"
((HOOK_STATUS == 0)) || e2e_fail "the hook exited $HOOK_STATUS: $(cat "$E2E_WORK/hook.err")"
[[ ! -s $E2E_WORK/hook.err ]] || e2e_fail "the hook complained: $(cat "$E2E_WORK/hook.err")"
e2e_check "GET /v1/containers lists crafted-1 with its pid, runtime, bundle, netns and annotations"
[[ $(listed_ids) == crafted-1 ]] || e2e_fail "listed: $(cat "$E2E_WORK/reply")"
check_entry crafted-1 "$WORKLOAD" runc "$E2E_WORK/bundle-crafted-1"
e2e_check "found by a unique id prefix too"
[[ $(agent_get /v1/containers/craf) == 200 ]] || e2e_fail "GET /v1/containers/craf: $(cat "$E2E_WORK/reply")"

state_json plain-1 created "$WORKLOAD" false >"$E2E_WORK/state-plain.json"
hook_run "$E2E_WORK/state-plain.json" "${HOOK_ARGS[@]}" poststart
e2e_check "a container without io.ferry.migratable=true is not registered (exit $HOOK_STATUS)"
((HOOK_STATUS == 0)) || e2e_fail "the hook exited $HOOK_STATUS"
[[ $(listed_ids) == crafted-1 ]] || e2e_fail "listed: $(cat "$E2E_WORK/reply")"

state_json crafted-1 stopped 0 >"$E2E_WORK/state-stop.json"
hook_run "$E2E_WORK/state-stop.json" "${HOOK_ARGS[@]}" poststop
e2e_check "poststop of crafted-1: exit 0 in ${HOOK_MS} ms, deregistered"
((HOOK_STATUS == 0)) || e2e_fail "the hook exited $HOOK_STATUS: $(cat "$E2E_WORK/hook.err")"
[[ -z $(listed_ids) ]] || e2e_fail "still listed: $(cat "$E2E_WORK/reply")"
e2e_check "a second poststop (already gone) is quiet: exit 0, nothing on stderr"
hook_run "$E2E_WORK/state-stop.json" "${HOOK_ARGS[@]}" poststop
((HOOK_STATUS == 0)) && [[ ! -s $E2E_WORK/hook.err ]] || e2e_fail "exit $HOOK_STATUS: $(cat "$E2E_WORK/hook.err")"

# --- (c) a real runc container carrying the hook --------------------------
BUNDLE=$E2E_WORK/bundle
mkdir -p "$BUNDLE/rootfs/bin" "$RUNC_ROOT"
cp "$(command -v busybox)" "$BUNDLE/rootfs/bin/busybox"
runc spec --bundle "$BUNDLE"
python3 - "$BUNDLE/config.json" "$HOOK" "$URL" "$TOKEN" <<'EOF'
import json, sys
path, hook, url, token = sys.argv[1:5]
config = json.load(open(path))
config["process"]["terminal"] = False
config["process"]["args"] = ["/bin/busybox", "sleep", "1000"]
config["annotations"] = {"io.ferry.migratable": "true"}
common = ["ferry-oci-hook", "--agent", url, "--token-file", token, "--runtime", "runc"]
config["hooks"] = {
    # poststart names its stage; poststop leaves it to the state's status
    # ("stopped"), as a podman hooks.d file serving both stages does.
    "poststart": [{"path": hook, "args": common + ["poststart"], "timeout": 5}],
    "poststop": [{"path": hook, "args": common, "timeout": 5}],
}
json.dump(config, open(path, "w"), indent=2)
EOF
e2e_say "runc run -d $CONTAINER (bundle $BUNDLE, runc --root $RUNC_ROOT)"
RUNC_CREATED=1
start=$(date +%s%N)
nsenter --net="/run/netns/$(e2e_ns a)" runc --root "$RUNC_ROOT" run -d --bundle "$BUNDLE" "$CONTAINER" \
	</dev/null >"$E2E_WORK/runc-run.out" 2>"$E2E_WORK/runc-run.err" ||
	e2e_fail "runc run failed: $(cat "$E2E_WORK/runc-run.err")"
e2e_say "runc run -d returned after $((($(date +%s%N) - start) / 1000000)) ms (poststart hook included)"
runc_pid=$(runc --root "$RUNC_ROOT" state "$CONTAINER" | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
e2e_check "the agent lists $CONTAINER (init pid $runc_pid) while it runs"
[[ $(listed_ids) == "$CONTAINER" ]] || e2e_fail "listed: $(cat "$E2E_WORK/reply")"
check_entry "$CONTAINER" "$runc_pid" runc "$BUNDLE"

nsenter --net="/run/netns/$(e2e_ns a)" runc --root "$RUNC_ROOT" delete --force "$CONTAINER" 2>"$E2E_WORK/runc-delete.err" ||
	e2e_fail "runc delete failed: $(cat "$E2E_WORK/runc-delete.err")"
RUNC_CREATED=""
e2e_check "after runc delete --force the poststop hook deregistered it"
[[ -z $(listed_ids) ]] || e2e_fail "still listed: $(cat "$E2E_WORK/reply")"
grep -q "container deregistered container=$CONTAINER" "$E2E_WORK/a/ferryd.log" ||
	e2e_fail "ferryd logged no deregistration of $CONTAINER (the entry may only have been dropped as dead)"

# --- (e) podman with the hooks.d file --------------------------------------
mkdir -p "$E2E_WORK/hooks.d" "$E2E_WORK/podman/run/tmp"
python3 - "$E2E_HERE/../../configs/hooks.d/ferry.json" "$E2E_WORK/hooks.d/ferry.json" "$HOOK" "$URL" "$TOKEN" <<'EOF'
import json, sys
source, dest, hook, url, token = sys.argv[1:6]
config = json.load(open(source))
# The shipped file, with the built binary and this agent.
config["hook"]["path"] = hook
config["hook"]["args"] += ["--agent", url, "--token-file", token]
json.dump(config, open(dest, "w"))
EOF
podman_run() { # NAME [PODMAN RUN ARGS...]: prints the container id
	local name=$1
	shift
	PODMAN_USED=1
	nsenter --net="/run/netns/$(e2e_ns a)" "${PODMAN[@]}" run -d --name "$name" --network none \
		--ulimit nofile=1024:1024 --ulimit nproc=4096:4096 "$@" --rootfs "$BUNDLE/rootfs" /bin/busybox sleep 1000 \
		2>"$E2E_WORK/podman.err" || e2e_fail "podman run $name failed: $(cat "$E2E_WORK/podman.err")"
}
PODMAN_USED=1
podman_id=$(podman_run fe2e-pod --annotation io.ferry.migratable=true)
plain_id=$(podman_run fe2e-plain)
podman_pid=$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$podman_id")
e2e_check "podman: the annotated container ${podman_id:0:12} (pid $podman_pid) is listed, the plain one ${plain_id:0:12} is not"
[[ $(listed_ids) == "$podman_id" ]] || e2e_fail "listed: $(cat "$E2E_WORK/reply")"
check_entry "$podman_id" "$podman_pid" podman "$E2E_WORK/podman/root/overlay-containers/$podman_id/userdata"
nsenter --net="/run/netns/$(e2e_ns a)" "${PODMAN[@]}" rm -f "$podman_id" "$plain_id" >/dev/null 2>"$E2E_WORK/podman.err" ||
	e2e_fail "podman rm failed: $(cat "$E2E_WORK/podman.err")"
e2e_check "podman rm -f: the poststop hook (stage from the status) deregistered it"
[[ -z $(listed_ids) ]] || e2e_fail "still listed: $(cat "$E2E_WORK/reply")"
grep -q "container deregistered container=$podman_id" "$E2E_WORK/a/ferryd.log" ||
	e2e_fail "ferryd logged no deregistration of $podman_id"

# --- (d) the registry survives an agent restart ---------------------------
hook_run "$E2E_WORK/state-start.json" "${HOOK_ARGS[@]}" poststart
((HOOK_STATUS == 0)) || e2e_fail "the hook exited $HOOK_STATUS: $(cat "$E2E_WORK/hook.err")"
e2e_kill_agent a
e2e_start_agent a
URL=${AGENT_URL[a]}
e2e_check "after SIGKILL and a restart on the same state dir, crafted-1 is still registered"
[[ $(listed_ids) == crafted-1 ]] || e2e_fail "listed after the restart: $(cat "$E2E_WORK/reply")"
check_entry crafted-1 "$WORKLOAD" runc "$E2E_WORK/bundle-crafted-1"
e2e_check "and dropped once its process is gone"
kill -9 "$WORKLOAD"
wait "$WORKLOAD" 2>/dev/null || true
[[ -z $(listed_ids) ]] || e2e_fail "a dead container is still listed: $(cat "$E2E_WORK/reply")"

# --- (b) fail-open ----------------------------------------------------------
sleep 1000 &
WORKLOAD=$!
e2e_track "$WORKLOAD"
state_json crafted-2 created "$WORKLOAD" >"$E2E_WORK/state-start.json"

# A listener that accepts into its backlog and never answers.
ip netns exec "$(e2e_ns a)" python3 -c '
import socket, sys, time
s = socket.socket(); s.bind(("198.51.100.1", 0)); s.listen(8)
print(s.getsockname()[1], flush=True); time.sleep(1000)' >"$E2E_WORK/silent.port" &
e2e_track $!
e2e_wait_for "$E2E_WORK/silent.port" '[0-9]' 10 || e2e_fail "the silent listener did not start"
SILENT=http://198.51.100.1:$(cat "$E2E_WORK/silent.port")

hook_run "$E2E_WORK/state-start.json" --agent "$SILENT" --token-file "$TOKEN" poststart
e2e_check "an agent that never answers: exit $HOOK_STATUS after ${HOOK_MS} ms (default timeout 1000 ms), reason on stderr"
((HOOK_STATUS == 0)) || e2e_fail "the hook exited $HOOK_STATUS"
((HOOK_MS >= 900 && HOOK_MS < 2000)) || e2e_fail "took ${HOOK_MS} ms"
grep -qi "tim" "$E2E_WORK/hook.err" || e2e_fail "no timeout reason on stderr: $(cat "$E2E_WORK/hook.err")"
e2e_say "hook said: $(cat "$E2E_WORK/hook.err")"

hook_run "$E2E_WORK/state-start.json" --agent "$SILENT" --token-file "$TOKEN" --timeout-ms 300 poststart
e2e_check "--timeout-ms 300: exit $HOOK_STATUS after ${HOOK_MS} ms"
((HOOK_STATUS == 0 && HOOK_MS < 1000)) || e2e_fail "exit $HOOK_STATUS after ${HOOK_MS} ms"

hook_run "$E2E_WORK/state-start.json" --agent http://198.51.100.1:1 --token-file "$TOKEN" poststart
e2e_check "a port nobody listens on: exit $HOOK_STATUS after ${HOOK_MS} ms, reason on stderr"
((HOOK_STATUS == 0 && HOOK_MS < 1000)) || e2e_fail "exit $HOOK_STATUS after ${HOOK_MS} ms"
[[ -s $E2E_WORK/hook.err ]] || e2e_fail "nothing on stderr"
e2e_say "hook said: $(cat "$E2E_WORK/hook.err")"

for bad in 'garbage' '' '{"id":"x"}' '{"id":"x","status":"running"}' '[1,2]'; do
	printf '%s' "$bad" >"$E2E_WORK/bad-state"
	hook_run "$E2E_WORK/bad-state" "${HOOK_ARGS[@]}" --agent "$URL" poststart
	e2e_check "bad stdin '$bad': exit $HOOK_STATUS, reason: $(head -c 160 "$E2E_WORK/hook.err")"
	((HOOK_STATUS == 0)) || e2e_fail "the hook exited $HOOK_STATUS"
	grep -q "state" "$E2E_WORK/hook.err" || e2e_fail "no reason on stderr"
done
hook_run "$E2E_WORK/state-start.json" --agent "$URL" --token-file "$TOKEN" --bogus-flag poststart
e2e_check "an unknown option: exit $HOOK_STATUS, reason on stderr"
((HOOK_STATUS == 0)) && grep -q -- "--bogus-flag" "$E2E_WORK/hook.err" || e2e_fail "exit $HOOK_STATUS: $(cat "$E2E_WORK/hook.err")"
printf 'wrong-token\n' >"$E2E_WORK/wrong-token"
hook_run "$E2E_WORK/state-start.json" --agent "$URL" --token-file "$E2E_WORK/wrong-token" poststart
e2e_check "a wrong token: exit $HOOK_STATUS, the agent's 401 on stderr"
((HOOK_STATUS == 0)) && grep -q "401" "$E2E_WORK/hook.err" || e2e_fail "exit $HOOK_STATUS: $(cat "$E2E_WORK/hook.err")"
agent_alive "the bad hook runs"
[[ -z $(listed_ids) ]] || e2e_fail "something got registered: $(cat "$E2E_WORK/reply")"

e2e_kill_agent a
hook_run "$E2E_WORK/state-start.json" --agent "$URL" --token-file "$TOKEN" poststart
e2e_check "the agent killed: poststart exits $HOOK_STATUS after ${HOOK_MS} ms, reason on stderr"
((HOOK_STATUS == 0 && HOOK_MS < 1500)) || e2e_fail "exit $HOOK_STATUS after ${HOOK_MS} ms"
[[ -s $E2E_WORK/hook.err ]] || e2e_fail "nothing on stderr"
hook_run "$E2E_WORK/state-stop.json" --agent "$URL" --token-file "$TOKEN" poststop
e2e_check "the agent killed: poststop exits $HOOK_STATUS after ${HOOK_MS} ms"
((HOOK_STATUS == 0 && HOOK_MS < 1500)) || e2e_fail "exit $HOOK_STATUS after ${HOOK_MS} ms"
