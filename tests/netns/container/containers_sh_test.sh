#!/bin/bash
# tests/support/containers.sh as the e2e tests use it: the demo server
# (dynamically linked, from the build tree) in a runc bundle and in a
# podman container of a per-test storage, both in a namespace the test
# made, answering a client in that namespace; then ct_cleanup, after which
# no container, mount, storage or directory of the test is left.
#
# usage: containers_sh_test.sh CONTAINERS_SH DEMO_SERVER
set -u

if [ "$(id -u)" -ne 0 ]; then
	if [ "${CI:-}" = true ]; then
		echo "privileged test needs root, and CI=true forbids skipping" >&2
		exit 1
	fi
	echo "privileged test skipped: not root" >&2
	exit 77
fi

lib=$1
server=$(readlink -f "$2")
# shellcheck source=tests/support/containers.sh
. "$lib"

fail() {
	echo "FAIL: $*" >&2
	exit 1
}

tmp=$(mktemp -d /tmp/ferry-ctsh-XXXXXX)
netns=ferry-ctsh-$$
runc_root=$tmp/runc
cleanup() {
	ct_cleanup
	ip netns del "$netns" 2>/dev/null
	rm -rf "$tmp"
}
trap cleanup EXIT
ct_track_dir "$tmp/work"

ip netns add "$netns" || fail "ip netns add"
ip -n "$netns" link set lo up

# A zombie is dead: its fds are closed, only its parent has yet to reap it
# (PID 1 here, for a container's init after runc run -d).
alive() {
	local state
	state=$(awk '{ sub(/^.*\) /, ""); print $1 }' "/proc/$1/stat" 2>/dev/null) || return 1
	[ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

# Waits for the server's "listening" line in a log and checks that a
# client in the namespace gets its stream (the first 512-byte frame).
expect_serving() {
	local log=$1 port=$2 i
	for i in $(seq 50); do
		grep -q '"event":"listening"' "$log" 2>/dev/null && break
		sleep 0.1
	done
	grep -q '"event":"listening"' "$log" || fail "no listening line in $log: $(cat "$log")"
	# The client's hello, then read what the server streams.
	local got
	got=$(ip netns exec "$netns" python3 - "$port" <<'EOF'
import socket, struct, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
s.sendall(b"FDM1" + struct.pack("<IQ", 0, 7))
data = b""
while len(data) < 512:
    chunk = s.recv(512 - len(data))
    if not chunk:
        break
    data += chunk
print(len(data))
EOF
	)
	[ "$got" = 512 ] || fail "the server in $log sent $got bytes, not a frame"
}

# --- runc ---
mkdir -p "$tmp/work"
CT_NETNS=$netns ct_make_runc_bundle "$tmp/work/bundle" demo "$server" --listen 127.0.0.1:7100 ||
	fail "ct_make_runc_bundle"
python3 - "$tmp/work/bundle/config.json" <<'EOF' || fail "config.json is not as documented"
import json, sys
c = json.load(open(sys.argv[1]))
assert c["process"]["terminal"] is False
assert c["annotations"]["io.ferry.migratable"] == "true"
assert "cgroupsPath" not in c["linux"]
net = [n for n in c["linux"]["namespaces"] if n["type"] == "network"]
assert net and net[0]["path"].startswith("/run/netns/ferry-ctsh-"), net
dests = {m["destination"] for m in c["mounts"]}
assert {"/usr", "/lib", "/lib64", "/etc/ld.so.cache"} <= dests, dests
EOF
export CT_RUNC_ROOT=$runc_root
ct_runc run -d --bundle "$tmp/work/bundle" demo </dev/null >"$tmp/runc.log" 2>&1 || fail "runc run: $(cat "$tmp/runc.log")"
ct_runc_track demo
expect_serving "$tmp/runc.log" 7100
runc_pid=$(ct_runc state demo | python3 -c 'import json,sys; print(json.load(sys.stdin)["pid"])')

# --- podman ---
ct_import_podman_image "$tmp/podman/root" "$tmp/podman/runroot" localhost/ferry-demo:1 || fail "import"
mapfile -t run_args < <(ct_podman_run_args)
mapfile -t bind_args < <(ct_podman_bind_args)
ct_podman run -d "${run_args[@]}" "${bind_args[@]}" -v "$(dirname "$server"):$(dirname "$server"):ro" \
	--name demo --network "ns:/run/netns/$netns" --annotation io.ferry.migratable=true \
	localhost/ferry-demo:1 "$server" --listen 127.0.0.1:7101 >/dev/null || fail "podman run"
for _ in $(seq 50); do
	ct_podman logs demo >"$tmp/podman.log" 2>&1
	grep -q listening "$tmp/podman.log" && break
	sleep 0.1
done
expect_serving "$tmp/podman.log" 7101
podman_pid=$(ct_podman inspect --format '{{.State.Pid}}' demo)
[ -n "$(awk -v d="$tmp/podman" 'index($5, d) == 1' /proc/self/mountinfo)" ] ||
	fail "podman mounted nothing below its storage (is the test looking in the right place?)"

# --- cleanup leaves nothing ---
ct_cleanup
alive "$runc_pid" && fail "the runc container's process $runc_pid survived"
alive "$podman_pid" && fail "the podman container's process $podman_pid survived"
[ -z "$(runc --root "$runc_root" list -q 2>/dev/null)" ] || fail "runc still lists containers"
[ -z "$(awk -v d="$tmp" 'index($5, d) == 1' /proc/self/mountinfo)" ] || fail "mounts left below $tmp"
if [ -e "$tmp/podman/root" ] || [ -e "$tmp/podman/runroot" ]; then
	fail "the podman storage is still there"
fi
[ ! -e "$tmp/work" ] || fail "the bundle directory is still there"
echo "containers.sh: runc and podman demo servers served and were cleaned up"
