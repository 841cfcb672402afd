#!/usr/bin/env bash
# The two-host demo: live connections migrate from host A to host B while
# data flows, and the peers notice no more than a pause.
#
#   bash containers/demo/two_host_demo.sh [BUILD_DIR]      (as root)
#
# Hosts are network namespaces joined by a bridge in a "switch" namespace:
#
#   client 198.51.100.100 ─┐
#   host A 198.51.100.1   ─┼─ br0 (ferry-demo-sw)
#   host B 198.51.100.2   ─┘
#
# The service address 198.51.100.10 (and 2001:db8::10) starts on A, where
# the demo server runs; ferryd on A moves the server's connections and the
# address to B, where ferryd starts a new server with the connections.
# Everything is removed at the end, also after a failure or Ctrl-C, and a
# run that was interrupted is cleaned up by the next one.
set -euo pipefail

build=$(realpath "${1:-build}")
here=$(cd "$(dirname "$0")" && pwd)
connections=${DEMO_CONNECTIONS:-4}
rate=${DEMO_RATE:-256k}
before=${DEMO_BEFORE_SECONDS:-2}
after=${DEMO_AFTER_SECONDS:-2}

ferryd=$build/agent/ferryd
ferry=$build/agent/cli/ferry
server=$build/containers/demo/ferry-demo-server
client=$build/containers/demo/ferry-demo-client
for binary in "$ferryd" "$ferry" "$server" "$client"; do
  [[ -x $binary ]] || { echo "demo: $binary is missing; build first (bash scripts/demo.sh does)" >&2; exit 2; }
done
((EUID == 0)) || { echo "demo: needs root (network namespaces, nftables, TCP_REPAIR)" >&2; exit 2; }

prefix=ferry-demo
work=/run/ferry-demo
pids=()

cleanup() {
  local status=$?
  trap - EXIT INT TERM
  # Processes this script started (recorded by pid), then anything left in
  # the demo namespaces: ferryd on B started the new server there.
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  if [[ -f $work/pids ]]; then
    while read -r pid; do kill "$pid" 2>/dev/null || true; done <"$work/pids"
  fi
  # Give the agents a moment to stop cleanly before anything is forced.
  for _ in $(seq 40); do
    alive=0
    for pid in "${pids[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    ((alive)) || break
    sleep 0.05
  done
  wait 2>/dev/null || true
  for ns in a b client sw; do
    if ip netns list | grep -qx "$prefix-$ns\( .*\)\?"; then
      for pid in $(ip netns pids "$prefix-$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null || true; done
      ip netns del "$prefix-$ns" 2>/dev/null || true
    fi
  done
  rm -rf "$work"
  exit "$status"
}

# A previous run that was interrupted leaves namespaces behind: start clean.
cleanup_previous() {
  if [[ -d $work || -n $(ip netns list | grep "^$prefix-" || true) ]]; then
    echo "demo: removing what an interrupted run left behind"
    (cleanup) || true
  fi
}
cleanup_previous
trap cleanup EXIT INT TERM
mkdir -p "$work"
: >"$work/pids"

step() { printf '\n== %s\n' "$*"; }

step "1. Hosts: namespaces A, B and a client, joined by a bridge"
ip netns add $prefix-sw
ip -n $prefix-sw link add br0 type bridge
ip -n $prefix-sw link set br0 up
ip -n $prefix-sw link set lo up
port=0
host() { # name, addresses...
  local name=$1; shift
  ip netns add "$prefix-$name"
  ip -n "$prefix-$name" link set lo up
  ip netns exec "$prefix-$name" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
  ip -n $prefix-sw link add "p$port" type veth peer name eth0 netns "$prefix-$name"
  ip -n $prefix-sw link set "p$port" master br0 up
  ip -n "$prefix-$name" link set eth0 up
  for address in "$@"; do
    if [[ $address == *:* ]]; then
      ip -n "$prefix-$name" addr add "$address" dev eth0 nodad
    else
      ip -n "$prefix-$name" addr add "$address" dev eth0
    fi
  done
  port=$((port + 1))
}
host a 198.51.100.1/24 198.51.100.10/24 2001:db8::1/64
host b 198.51.100.2/24 2001:db8::2/64
host client 198.51.100.100/24 2001:db8::100/64
echo "   A 198.51.100.1, B 198.51.100.2, client 198.51.100.100; service 198.51.100.10 on A"

step "2. ferryd on A and on B, with a bearer token"
head -c 32 /dev/urandom | base64 | tr -d '\n' >"$work/token"
chmod 600 "$work/token"
start_agent() { # host, address
  local name=$1 address=$2
  mkdir -p "$work/$name"
  ip netns exec "$prefix-$name" "$ferryd" --listen "$address:7411" --state-dir "$work/$name" \
    --token-file "$work/token" --allow-netns self --allow-interface eth0 --allow-address 198.51.100.0/24 \
    --allow-address 2001:db8::/32 --log "${DEMO_LOG:-warn}" >"$work/$name/ferryd.out" 2>"$work/$name/ferryd.log" &
  pids+=($!)
  echo $! >>"$work/pids"
  for _ in $(seq 100); do
    grep -q "listening" "$work/$name/ferryd.out" 2>/dev/null && break
    sleep 0.05
  done
  grep -q "listening" "$work/$name/ferryd.out" || { echo "demo: ferryd on $name did not start:" >&2; cat "$work/$name/ferryd.log" >&2; exit 1; }
  echo "   $(cat "$work/$name/ferryd.out") (host $name)"
}
start_agent a 198.51.100.1
start_agent b 198.51.100.2

step "3. The demo server on A, migration-aware through ferryd's handoff socket"
FERRY_HANDOFF_SOCKET=$work/a/handoff.sock ip netns exec $prefix-a "$server" --listen 198.51.100.10:7000 \
  --rate "$rate" >"$work/server-a.out" 2>"$work/server-a.log" &
server_pid=$!
pids+=($server_pid)
echo $server_pid >>"$work/pids"
for _ in $(seq 100); do grep -q listening "$work/server-a.out" 2>/dev/null && break; sleep 0.05; done
echo "   server pid $server_pid listening on 198.51.100.10:7000"

step "4. $connections client connections streaming checksummed, sequence-numbered data both ways"
ip netns exec $prefix-client "$client" --connect 198.51.100.10:7000 --connections "$connections" --rate "$rate" \
  >"$work/client.out" 2>"$work/client.log" &
client_pid=$!
pids+=($client_pid)
echo $client_pid >>"$work/pids"
sleep "$before"

step "5. Migrate the server's connections and its address from A to B"
set +e
ip netns exec $prefix-a "$ferry" --agent http://198.51.100.1:7411 --token-file "$work/token" -o json migrate \
  --pid "$server_pid" --to http://198.51.100.2:7411 --target-netns self --address 198.51.100.10/24@eth0 \
  --exec "$server --rate $rate" --env "FERRY_HANDOFF_SOCKET=$work/b/handoff.sock" >"$work/migrate.json" 2>"$work/migrate.err"
migrate_status=$?
set -e
sleep "$after"

step "6. Stop the clients and the server on B, and read their verdicts"
kill -TERM "$client_pid" 2>/dev/null || true
set +e
wait "$client_pid" 2>/dev/null
client_status=$?
# The server on B is ferryd's child there; it reports when it ends.
agent_b=${pids[1]}
for pid in $(ip netns pids $prefix-b); do
  [[ $pid == "$agent_b" ]] || kill -TERM "$pid" 2>/dev/null
done
sleep 0.5
if [[ -s $work/migrate.err ]]; then sed 's/^/   ferry: /' "$work/migrate.err"; fi
python3 "$here/demo_report.py" --migrate "$work/migrate.json" --migrate-status "$migrate_status" \
  --client "$work/client.out" --client-status "$client_status" --server "$work/b/ferryd.out"
result=$?
set -e

step "7. Clean up (namespaces, agents, servers)"
exit $result
