# shellcheck shell=bash disable=SC2034
# Shared by the end-to-end tests (sourced, not run). Each test is a bash
# script that meson runs as
#
#   bash tests/e2e/<case>.sh FERRYD FERRY DEMO_SERVER DEMO_CLIENT
#
# and that calls e2e_init "$@" first. The hosts are network namespaces
# named after the test's pid (fe2e<pid>-a, -b, -c for the client, -sw for
# the switch), so that two runs never share anything, joined by veth pairs
# to a bridge in the switch namespace:
#
#   client 198.51.100.100  2001:db8::100 ─┐
#   host A 198.51.100.1    2001:db8::1   ─┼─ br0 (fe2e<pid>-sw)
#   host B 198.51.100.2    2001:db8::2   ─┘
#
# Everything lives in those namespaces and in one temporary directory, so
# the EXIT trap removes all of it, also when an assertion fails halfway:
# it kills the processes the test started (by pid), then whatever is left
# in its namespaces (the servers ferryd on B started), then deletes the
# namespaces, which takes their addresses and nft tables with them.
#
# Helpers fail the test with e2e_fail, which prints the agents' logs;
# nothing here ignores an error silently.

set -euo pipefail

E2E_HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
E2E_PIDS=()
E2E_NETNS=()
E2E_WORK=""
E2E_KEEP=${E2E_KEEP:-}
declare -A AGENT_URL=() AGENT_PID=() AGENT_PORT=()
AGENT_ARGS_A=()
AGENT_ARGS_B=()
# Commands e2e_cleanup runs first, while the namespaces still exist (the
# container cases remove their containers and podman storage there).
E2E_CLEANUP_HOOKS=()

# --- reporting ---------------------------------------------------------

e2e_say() { printf '[e2e %s] %s\n' "${E2E_NAME:-?}" "$*"; }
e2e_check() { printf '[e2e %s] check: %s\n' "${E2E_NAME:-?}" "$*"; }

e2e_dump_logs() {
	[[ -n $E2E_WORK && -d $E2E_WORK ]] || return 0
	local f
	for f in "$E2E_WORK"/*/ferryd.log "$E2E_WORK"/*/ferryd.out "$E2E_WORK"/*.out "$E2E_WORK"/*.err "$E2E_WORK"/*.log "$E2E_WORK"/*.json; do
		[[ -s $f ]] || continue
		printf -- '----- %s (last 60 lines)\n' "${f#"$E2E_WORK"/}" >&2
		tail -n 60 "$f" >&2
	done
}

e2e_fail() {
	printf '[e2e %s] FAIL: %s\n' "${E2E_NAME:-?}" "$*" >&2
	e2e_dump_logs
	exit 1
}

# --- setup and cleanup -------------------------------------------------

e2e_cleanup() {
	local status=$?
	trap - EXIT INT TERM
	set +e
	local pid ns hook
	for hook in "${E2E_CLEANUP_HOOKS[@]}"; do "$hook"; done
	for pid in "${E2E_PIDS[@]}"; do kill -9 "$pid" 2>/dev/null; done
	for pid in "${E2E_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
	for ns in "${E2E_NETNS[@]}"; do
		# What the test did not start itself: the workloads ferryd started.
		for pid in $(ip netns pids "$ns" 2>/dev/null); do kill -9 "$pid" 2>/dev/null; done
	done
	for ns in "${E2E_NETNS[@]}"; do
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			[[ -z $(ip netns pids "$ns" 2>/dev/null) ]] && break
			sleep 0.1
		done
		ip netns del "$ns" 2>/dev/null
	done
	if [[ -n $E2E_WORK && -d $E2E_WORK ]]; then
		if [[ -n $E2E_KEEP ]]; then
			echo "[e2e ${E2E_NAME:-?}] kept $E2E_WORK" >&2
		else
			rm -rf "$E2E_WORK"
		fi
	fi
	if ((status == 0)); then
		e2e_say "PASS"
	else
		printf '[e2e %s] FAILED (status %d)\n' "${E2E_NAME:-?}" "$status" >&2
	fi
	exit "$status"
}

# e2e_init FERRYD FERRY DEMO_SERVER DEMO_CLIENT
# Checks privileges, creates the work directory and the three hosts.
e2e_init() {
	E2E_NAME=${E2E_NAME:-$(basename "$0" .sh)}
	if (($# < 4)); then
		echo "usage: $0 FERRYD FERRY DEMO_SERVER DEMO_CLIENT" >&2
		exit 2
	fi
	FERRYD=$(realpath "$1")
	FERRY=$(realpath "$2")
	DEMO_SERVER=$(realpath "$3")
	DEMO_CLIENT=$(realpath "$4")
	local binary
	for binary in "$FERRYD" "$FERRY" "$DEMO_SERVER" "$DEMO_CLIENT"; do
		[[ -x $binary ]] || { echo "[e2e $E2E_NAME] $binary is not executable" >&2; exit 1; }
	done
	if ((EUID != 0)); then
		if [[ ${CI:-} == true ]]; then
			echo "[e2e $E2E_NAME] FAIL: needs root (namespaces, nftables, TCP_REPAIR), and CI=true forbids skipping" >&2
			exit 1
		fi
		echo "[e2e $E2E_NAME] SKIP: needs root" >&2
		exit 77
	fi
	E2E_PREFIX=fe2e$$
	E2E_WORK=$(mktemp -d "/tmp/$E2E_PREFIX.XXXXXX")
	trap e2e_cleanup EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	head -c 32 /dev/urandom | base64 | tr -d '\n' >"$E2E_WORK/token"
	chmod 600 "$E2E_WORK/token"
	TOKEN=$E2E_WORK/token

	e2e_netns_add sw
	ip -n "$(e2e_ns sw)" link add br0 type bridge
	ip -n "$(e2e_ns sw)" link set br0 up
	e2e_host a 198.51.100.1/24 2001:db8::1/64
	e2e_host b 198.51.100.2/24 2001:db8::2/64
	e2e_host c 198.51.100.100/24 2001:db8::100/64
	e2e_say "hosts: A 198.51.100.1, B 198.51.100.2, client 198.51.100.100 (namespaces $E2E_PREFIX-*)"
}

e2e_ns() { echo "$E2E_PREFIX-$1"; }

e2e_netns_add() {
	local ns
	ns=$(e2e_ns "$1")
	ip netns add "$ns"
	E2E_NETNS+=("$ns")
	ip -n "$ns" link set lo up
}

# e2e_host NAME ADDRESS... : a namespace with eth0 on the bridge.
e2e_host() {
	local name=$1 ns address
	shift
	e2e_netns_add "$name"
	ns=$(e2e_ns "$name")
	ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_dad=0 net.ipv6.conf.default.accept_dad=0
	ip -n "$(e2e_ns sw)" link add "v$name" type veth peer name eth0 netns "$ns"
	ip -n "$(e2e_ns sw)" link set "v$name" master br0 up
	ip -n "$ns" link set eth0 up
	for address in "$@"; do e2e_address_add "$name" "$address"; done
}

e2e_address_add() { # HOST CIDR
	if [[ $2 == *:* ]]; then
		ip -n "$(e2e_ns "$1")" addr add "$2" dev eth0 nodad
	else
		ip -n "$(e2e_ns "$1")" addr add "$2" dev eth0
	fi
}

# Runs a command in a host's namespace. Not for background processes whose
# pid the test needs: `f &` forks a subshell, so $! would not be the
# program's pid (`ip netns exec` itself execs the program).
e2e_in() {
	local host=$1
	shift
	ip netns exec "$(e2e_ns "$host")" "$@"
}

# Records a background process for the cleanup. Call right after `&`.
e2e_track() { E2E_PIDS+=("$1"); }

e2e_wait_for() { # FILE PATTERN SECONDS
	local file=$1 pattern=$2 limit=$(($3 * 20)) i
	for ((i = 0; i < limit; i++)); do
		grep -q -- "$pattern" "$file" 2>/dev/null && return 0
		sleep 0.05
	done
	return 1
}

# --- agents ------------------------------------------------------------

# e2e_start_agent HOST [FERRYD ARGS...]
# Starts ferryd in HOST on its host address, port 0, state dir WORK/HOST,
# the shared token and an allowlist for the documentation ranges (callers
# add or replace with their own flags). FERRY_FAILPOINTS, when set in the
# caller's environment for this call, reaches ferryd. Sets AGENT_URL[HOST],
# AGENT_PID[HOST] and AGENT_PORT[HOST]. With E2E_AGENT_PORT set, listens on
# that port instead (a restart on the port the peer knows). With the array
# E2E_AGENT_AUTH set, its flags replace --token-file (TLS, client CA).
e2e_start_agent() {
	local host=$1 address pid
	shift
	case $host in
	a) address=198.51.100.1 ;;
	b) address=198.51.100.2 ;;
	*) e2e_fail "no agent address for host $host" ;;
	esac
	local dir=$E2E_WORK/$host
	mkdir -p "$dir"
	: >"$dir/ferryd.out"
	local auth=(--token-file "$TOKEN")
	[[ -n ${E2E_AGENT_AUTH+x} ]] && auth=("${E2E_AGENT_AUTH[@]}")
	local environment=(env -u FERRY_FAILPOINTS)
	[[ -n ${FERRY_FAILPOINTS:-} ]] && environment=(env "FERRY_FAILPOINTS=$FERRY_FAILPOINTS")
	# E2E_AGENT_ENV (an array of K=V), when set for this call, reaches ferryd.
	[[ -n ${E2E_AGENT_ENV+x} ]] && environment+=("${E2E_AGENT_ENV[@]}")
	# `ip netns exec` remounts /sys for the namespace, which hides the
	# cgroup hierarchies mounted below /sys/fs/cgroup: an agent that
	# freezes containers or runs runc and podman joins the network
	# namespace only (E2E_AGENT_NET_ONLY=1).
	local enter=(ip netns exec "$(e2e_ns "$host")")
	[[ -n ${E2E_AGENT_NET_ONLY:-} ]] && enter=(nsenter "--net=/run/netns/$(e2e_ns "$host")")
	"${enter[@]}" "${environment[@]}" "$FERRYD" --listen "$address:${E2E_AGENT_PORT:-0}" --state-dir "$dir" \
		"${auth[@]}" --allow-netns self --allow-interface eth0 \
		--allow-address 198.51.100.0/24 --allow-address 2001:db8::/32 --log info "$@" \
		>>"$dir/ferryd.out" 2>>"$dir/ferryd.log" &
	pid=$!
	e2e_track "$pid"
	if ! e2e_wait_for "$dir/ferryd.out" "listening on" 10; then
		e2e_fail "ferryd on $host did not start"
	fi
	AGENT_PID[$host]=$pid
	AGENT_URL[$host]=$(sed -n 's/^ferryd listening on \([^ ]*\).*/\1/p' "$dir/ferryd.out" | tail -n 1)
	AGENT_PORT[$host]=${AGENT_URL[$host]##*:}
	e2e_say "ferryd on $host: pid $pid, ${AGENT_URL[$host]}${FERRY_FAILPOINTS:+, failpoints $FERRY_FAILPOINTS}"
}

# e2e_kill_agent HOST: SIGKILL, and reap it.
e2e_kill_agent() {
	local pid=${AGENT_PID[$1]}
	kill -9 "$pid" || e2e_fail "ferryd on $1 (pid $pid) is not running"
	wait "$pid" 2>/dev/null || true
	e2e_say "killed ferryd on $1 (pid $pid) with SIGKILL"
}

# The ferry CLI against HOST's agent, run in HOST, with the token and json
# output: e2e_ferry HOST ARGS...
e2e_ferry() {
	local host=$1
	shift
	e2e_in "$host" "$FERRY" --agent "${AGENT_URL[$host]}" --token-file "$TOKEN" -o json "$@"
}

# --- the demo workload -------------------------------------------------

# e2e_start_server LISTEN RATE: the demo server on A, registered with A's
# agent through its handoff socket. Sets SERVER_PID and SERVER_ADDRESS.
e2e_start_server() {
	local listen=$1 rate=$2
	: >"$E2E_WORK/server-a.out"
	FERRY_HANDOFF_SOCKET=$E2E_WORK/a/handoff.sock ip netns exec "$(e2e_ns a)" "$DEMO_SERVER" --listen "$listen" --rate "$rate" \
		>"$E2E_WORK/server-a.out" 2>"$E2E_WORK/server-a.log" &
	SERVER_PID=$!
	e2e_track "$SERVER_PID"
	e2e_wait_for "$E2E_WORK/server-a.out" '"listening"' 10 || e2e_fail "the demo server did not start"
	e2e_wait_for "$E2E_WORK/a/ferryd.log" "workload registered.*pid=$SERVER_PID" 10 ||
		e2e_fail "the demo server did not register with ferryd on A"
	SERVER_ADDRESS=$(python3 "$E2E_HERE/check.py" field "$E2E_WORK/server-a.out" listening address)
	SERVER_RATE=$rate
	e2e_say "demo server on A: pid $SERVER_PID, $SERVER_ADDRESS, registered through the handoff socket"
}

# e2e_start_client CONNECTIONS RATE [CLIENT ARGS...]: sets CLIENT_PID.
e2e_start_client() {
	local connections=$1 rate=$2
	shift 2
	: >"$E2E_WORK/client.out"
	ip netns exec "$(e2e_ns c)" "$DEMO_CLIENT" --connect "$SERVER_ADDRESS" --connections "$connections" --rate "$rate" "$@" \
		>"$E2E_WORK/client.out" 2>"$E2E_WORK/client.log" &
	CLIENT_PID=$!
	e2e_track "$CLIENT_PID"
	CLIENT_CONNECTIONS=$connections
	e2e_wait_for "$E2E_WORK/client.log" "connections open" 20 || e2e_fail "the demo client did not connect"
	e2e_say "demo client: pid $CLIENT_PID, $connections connections to $SERVER_ADDRESS at $rate/s each"
}

# Asks a process that prints one JSON line on SIGUSR1 for it and copies the
# new line to DEST: e2e_snapshot PID OUTFILE EVENT DEST
e2e_snapshot() {
	local pid=$1 out=$2 event=$3 dest=$4 before i
	before=$(grep -c "\"event\":\"$event\"" "$out" || true)
	kill -USR1 "$pid" || e2e_fail "process $pid (for $event) is gone"
	for ((i = 0; i < 100; i++)); do
		if (($(grep -c "\"event\":\"$event\"" "$out" || true) > before)); then
			grep "\"event\":\"$event\"" "$out" | tail -n 1 >"$dest"
			return 0
		fi
		sleep 0.05
	done
	e2e_fail "no $event line from pid $pid after SIGUSR1"
}

# Ends the client (SIGTERM: it stops sending, drains and reports) and
# returns its exit status in CLIENT_STATUS.
e2e_stop_client() {
	kill -TERM "$CLIENT_PID" 2>/dev/null || true
	set +e
	wait "$CLIENT_PID"
	CLIENT_STATUS=$?
	set -e
	e2e_say "demo client ended with status $CLIENT_STATUS"
}

# The pids in HOST's namespace other than its agent: the servers ferryd
# started there.
e2e_workloads_in() {
	local host=$1 pid
	for pid in $(ip netns pids "$(e2e_ns "$host")"); do
		[[ $pid == "${AGENT_PID[$host]:-}" ]] || echo "$pid"
	done
}

# SIGTERM to a server and wait until it printed its final line to OUT.
e2e_stop_server() { # PID OUT
	kill -TERM "$1" 2>/dev/null || true
	e2e_wait_for "$2" '"event":"final"' 10 || e2e_fail "server $1 printed no final report"
}

# --- migrate -----------------------------------------------------------

# e2e_migrate_start ADDRESS_CIDR [EXTRA MIGRATE ARGS...]: ferry migrate on
# A of the demo server to B, in the background (MIGRATE_PID); --to is B's
# agent unless E2E_TO is set, --target-netns self unless E2E_TARGET_NETNS
# is. The status JSON goes to WORK/migrate.json, stderr to
# WORK/migrate.err. e2e_migrate_wait collects it.
e2e_migrate_start() {
	local cidr=$1
	shift
	local to=${E2E_TO:-${AGENT_URL[b]:-}}
	e2e_ferry a migrate --pid "$SERVER_PID" --to "$to" --target-netns "${E2E_TARGET_NETNS:-self}" \
		--address "$cidr@eth0" --exec "$DEMO_SERVER --rate $SERVER_RATE" \
		--env "FERRY_HANDOFF_SOCKET=$E2E_WORK/b/handoff.sock" "$@" \
		>"$E2E_WORK/migrate.json" 2>"$E2E_WORK/migrate.err" &
	MIGRATE_PID=$!
	e2e_track "$MIGRATE_PID"
	e2e_say "ferry migrate started (to $to)"
}

# Sets MIGRATE_STATUS (the CLI's exit status) and MIGRATION_ID.
e2e_migrate_wait() {
	set +e
	wait "$MIGRATE_PID"
	MIGRATE_STATUS=$?
	set -e
	MIGRATION_ID=$(python3 "$E2E_HERE/check.py" get "$E2E_WORK/migrate.json" id 2>/dev/null || true)
	e2e_say "ferry migrate exited $MIGRATE_STATUS, migration ${MIGRATION_ID:-?}"
	if [[ -s $E2E_WORK/migrate.err ]]; then sed 's/^/    ferry: /' "$E2E_WORK/migrate.err"; fi
}

e2e_migrate() {
	e2e_migrate_start "$@"
	e2e_migrate_wait
}

# The start of every rollback case: agents on A and B (FAILPOINTS_A and
# FAILPOINTS_B become their FERRY_FAILPOINTS; AGENT_ARGS_A and AGENT_ARGS_B
# arrays their extra flags), the service address 198.51.100.10 and the
# demo server on A, and 4 connections streaming at 256 KiB/s each way.
e2e_rollback_setup() {
	FERRY_FAILPOINTS=${FAILPOINTS_A:-} e2e_start_agent a "${AGENT_ARGS_A[@]}"
	FERRY_FAILPOINTS=${FAILPOINTS_B:-} e2e_start_agent b "${AGENT_ARGS_B[@]}"
	SERVICE_CIDR=198.51.100.10/24
	SERVICE_ADDRESS=198.51.100.10
	e2e_address_add a "$SERVICE_CIDR"
	e2e_start_server 198.51.100.10:0 256k
	e2e_start_client 4 256k
	sleep 1
}

# --- assertions --------------------------------------------------------

e2e_has_address() { # HOST ADDRESS (no prefix)
	ip -n "$(e2e_ns "$1")" -o addr show dev eth0 | awk '{print $4}' | grep -qx -- "$2/[0-9]*"
}

e2e_assert_address_on() { # HOST ADDRESS OTHERHOST
	e2e_check "service address $2 is on $1 and not on $3"
	e2e_has_address "$1" "$2" || e2e_fail "$2 is not on host $1: $(ip -n "$(e2e_ns "$1")" -o addr show dev eth0)"
	! e2e_has_address "$3" "$2" || e2e_fail "$2 is still (or also) on host $3"
}

# No nft table whose name contains "ferry" in any host: the flow locks.
e2e_assert_no_lock() {
	local host tables
	e2e_check "no ferry nft table left on A or B"
	for host in "$@"; do
		tables=$(e2e_in "$host" nft list tables 2>&1) || e2e_fail "nft list tables in $host: $tables"
		if grep -qi ferry <<<"$tables"; then
			e2e_fail "host $host still has a ferry nft table: $tables
$(e2e_in "$host" nft list ruleset 2>&1 | head -40)"
		fi
	done
}

# No live journal (STATE/journal/*.journal) on the hosts given; with
# E2E_DONE_ID set, that migration's journal is in done/ on each.
e2e_assert_journals_retired() {
	local host live
	for host in "$@"; do
		e2e_check "no live journal on $host${E2E_DONE_ID:+, $E2E_DONE_ID retired to done/}"
		live=$(find "$E2E_WORK/$host/journal" -maxdepth 1 -name '*.journal' 2>/dev/null)
		[[ -z $live ]] || e2e_fail "live journal(s) on $host: $live
$(tail -n 20 $live)"
		if [[ -n ${E2E_DONE_ID:-} ]]; then
			[[ -f $E2E_WORK/$host/journal/done/$E2E_DONE_ID.journal ]] ||
				e2e_fail "no $E2E_DONE_ID.journal in $host's journal/done: $(ls "$E2E_WORK/$host/journal/done" 2>&1)"
		fi
	done
}

# e2e_assert_status HOST ID PHASE [ERROR_SUBSTRING]: `ferry status` there.
e2e_assert_status() {
	local host=$1 id=$2 phase=$3 error=${4:-}
	e2e_check "ferry status $id on $host: $phase${error:+, error mentions '$error'}"
	# `ferry status` exits 1 for an aborted migration, 0 otherwise.
	local expected=0 code=0
	[[ $phase == aborted ]] && expected=1
	e2e_ferry "$host" status "$id" >"$E2E_WORK/status-$host.json" 2>"$E2E_WORK/status-$host.err" || code=$?
	((code == expected)) ||
		e2e_fail "ferry status $id on $host exited $code, expected $expected: $(cat "$E2E_WORK/status-$host.err")"
	python3 "$E2E_HERE/check.py" status "$E2E_WORK/status-$host.json" --id "$id" --phase "$phase" \
		${error:+--error "$error"} || e2e_fail "status of $id on $host"
}

# e2e_assert_listed HOST ID PHASE: `ferry list` there shows it.
e2e_assert_listed() {
	local host=$1 id=$2 phase=$3
	e2e_check "ferry list on $host shows $id $phase"
	e2e_ferry "$host" list >"$E2E_WORK/list-$host.json" 2>"$E2E_WORK/list-$host.err" ||
		e2e_fail "ferry list on $host failed: $(cat "$E2E_WORK/list-$host.err")"
	python3 "$E2E_HERE/check.py" listed "$E2E_WORK/list-$host.json" --id "$id" --phase "$phase" ||
		e2e_fail "list on $host"
}

e2e_py() { python3 "$E2E_HERE/check.py" "$@"; }
# A top-level field of the JSON document on stdin (runc state, podman inspect).
e2e_py_stdin_get() { python3 -c 'import json,sys; d=json.load(sys.stdin); d=d[0] if isinstance(d,list) else d; print(d[sys.argv[1]])' "$1"; }

# After an abort: the client keeps streaming over the same connections to
# the server on A, both verify every byte, and nothing is left behind.
# e2e_assert_rolled_back SERVICE_ADDRESS REASON_SUBSTRING [HOSTS WITH AGENTS]
e2e_assert_rolled_back() {
	local address=$1 reason=$2
	shift 2
	local hosts=("$@")
	((${#hosts[@]})) || hosts=(a b)

	e2e_check "ferry migrate exited 1 (aborted)"
	((MIGRATE_STATUS == 1)) || e2e_fail "ferry migrate exited $MIGRATE_STATUS, expected 1"
	[[ -n $MIGRATION_ID ]] || e2e_fail "ferry migrate -o json printed no migration id"
	e2e_py status "$E2E_WORK/migrate.json" --id "$MIGRATION_ID" --phase aborted --error "$reason" ||
		e2e_fail "the migrate result"

	e2e_snapshot "$CLIENT_PID" "$E2E_WORK/client.out" progress "$E2E_WORK/client-after-abort.json"
	e2e_snapshot "$SERVER_PID" "$E2E_WORK/server-a.out" status "$E2E_WORK/server-after-abort.json"
	e2e_assert_address_on a "$address" b
	e2e_assert_no_lock "${hosts[@]}"
	E2E_DONE_ID=$MIGRATION_ID e2e_assert_journals_retired a
	e2e_assert_status a "$MIGRATION_ID" aborted "$reason"

	sleep 1
	e2e_check "the server on A still serves the same connections after the abort"
	e2e_snapshot "$SERVER_PID" "$E2E_WORK/server-a.out" status "$E2E_WORK/server-later.json"
	e2e_py server-grew "$E2E_WORK/server-after-abort.json" "$E2E_WORK/server-later.json" \
		--connections "$CLIENT_CONNECTIONS" || e2e_fail "server on A after the abort"
	e2e_stop_client
	e2e_check "the client saw every connection alive, zero errors, bytes verified after the abort"
	e2e_py client-report "$E2E_WORK/client.out" --status "$CLIENT_STATUS" --connections "$CLIENT_CONNECTIONS" \
		--grew-since "$E2E_WORK/client-after-abort.json" || e2e_fail "client report after the abort"
	e2e_stop_server "$SERVER_PID" "$E2E_WORK/server-a.out"
	e2e_check "the server on A ended with zero errors and no reset"
	e2e_py server-final "$E2E_WORK/server-a.out" --connections "$CLIENT_CONNECTIONS" ||
		e2e_fail "server on A"
}

# --- the committed migration, shared by the streaming cases -------------

# e2e_committed_migration SERVICE_CIDR LISTEN CONNECTIONS RATE [CLIENT ARGS...]
# Agents on A and B, the service address and the demo server on A, the
# client streaming; then ferry migrate, and every check of a committed
# migration: result, client verifying after the commit, the server on B
# with inherited offsets, the address moved, no lock, journals retired,
# listed as committed on both agents. With --idle among the client args,
# nothing streams and "grew" checks are left out.
e2e_committed_migration() {
	local cidr=$1 listen=$2 connections=$3 rate=$4
	shift 4
	local address=${cidr%/*} idle=()
	[[ " $* " == *" --idle "* ]] && idle=(--idle)
	e2e_start_agent a
	e2e_start_agent b
	e2e_address_add a "$cidr"
	e2e_start_server "$listen" "$rate"
	e2e_start_client "$connections" "$rate" "$@"
	sleep "${E2E_BEFORE_SECONDS:-1.5}"
	e2e_snapshot "$CLIENT_PID" "$E2E_WORK/client.out" progress "$E2E_WORK/client-before.json"

	e2e_migrate "$cidr"
	e2e_snapshot "$CLIENT_PID" "$E2E_WORK/client.out" progress "$E2E_WORK/client-after-commit.json"
	e2e_check "ferry migrate exited 0 and the migration committed"
	((MIGRATE_STATUS == 0)) || e2e_fail "ferry migrate exited $MIGRATE_STATUS"
	e2e_py status "$E2E_WORK/migrate.json" --id "$MIGRATION_ID" --phase committed || e2e_fail "migrate result"
	e2e_py get "$E2E_WORK/migrate.json" connections >"$E2E_WORK/moved"
	e2e_check "sockets moved: $(cat "$E2E_WORK/moved") (at least $connections connections)"
	(($(cat "$E2E_WORK/moved") >= connections)) || e2e_fail "only $(cat "$E2E_WORK/moved") sockets moved"
	e2e_say "blackout $(e2e_py get "$E2E_WORK/migrate.json" blackoutUs) us, lock window $(e2e_py get "$E2E_WORK/migrate.json" lockWindowUs) us"

	e2e_assert_address_on b "$address" a
	e2e_assert_no_lock a b
	E2E_DONE_ID=$MIGRATION_ID e2e_assert_journals_retired a b
	e2e_assert_listed a "$MIGRATION_ID" committed
	e2e_assert_listed b "$MIGRATION_ID" committed

	e2e_check "the server on A exited after the commit"
	local i
	for ((i = 0; i < 100; i++)); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.05; done
	! kill -0 "$SERVER_PID" 2>/dev/null || e2e_fail "the server on A (pid $SERVER_PID) is still running"
	local servers
	servers=$(e2e_workloads_in b)
	e2e_check "one server runs on B: ${servers//$'\n'/ }"
	[[ -n $servers && $(wc -w <<<"$servers") == 1 ]] || e2e_fail "expected one server on B, found '${servers}'"

	sleep "${E2E_AFTER_SECONDS:-1.5}"
	e2e_stop_client
	e2e_check "client: all $connections connections alive, zero errors, bytes verified both ways after the commit"
	e2e_py client-report "$E2E_WORK/client.out" --status "$CLIENT_STATUS" --connections "$connections" \
		--grew-since "$E2E_WORK/client-after-commit.json" "${idle[@]}" || e2e_fail "client report"
	e2e_stop_server "$servers" "$E2E_WORK/b/ferryd.out"
	e2e_check "the server on B: zero errors, $connections adopted connections with inherited offsets"
	e2e_py server-final "$E2E_WORK/b/ferryd.out" --connections "$connections" --inherited "${idle[@]}" ||
		e2e_fail "server on B"
}

# --- containers (issue 5) ------------------------------------------------

# e2e_containers_init: the shared container helpers (tests/support/
# containers.sh), their cleanup before the namespaces go, and the
# directories the container cases share:
#   WORK/handoff   both agents' handoff sockets (a.sock, b.sock), bound
#                  into the containers at the same path
#   WORK/out       the demo server's output files, written from inside
# The demo server runs in the container under `sh -c`, appending its
# stdout and stderr to $DEMO_OUT and $DEMO_LOG, so that the server on B,
# started by ferryd with the same command, writes where the migration's
# --env DEMO_OUT=... says.
e2e_containers_init() {
	# shellcheck source=../support/containers.sh
	. "$E2E_HERE/../support/containers.sh"
	E2E_CLEANUP_HOOKS+=(ct_cleanup)
	mkdir -p "$E2E_WORK/handoff" "$E2E_WORK/out"
	E2E_AGENT_NET_ONLY=1
	E2E_CONTAINER=fe2e$$-web
	SERVICE_CIDR=198.51.100.10/24
	SERVICE_ADDRESS=198.51.100.10
	E2E_SERVER_COMMAND=(sh -c 'exec "$0" "$@" >>"$DEMO_OUT" 2>>"$DEMO_LOG"' "$DEMO_SERVER"
		--listen "$SERVICE_ADDRESS:0" --rate 256k)
	SERVER_RATE=256k
}

# The demo server's environment in the source container.
e2e_container_env() {
	printf '%s\n' "FERRY_HANDOFF_SOCKET=$E2E_WORK/handoff/a.sock" "DEMO_OUT=$E2E_WORK/out/server-a.out" \
		"DEMO_LOG=$E2E_WORK/out/server-a.log"
}

# e2e_wait_container_server PID: the server in the container printed its
# address and registered with A's agent (under its host pid). Sets
# SERVER_PID and SERVER_ADDRESS.
e2e_wait_container_server() {
	SERVER_PID=$1
	e2e_wait_for "$E2E_WORK/out/server-a.out" '"listening"' 20 ||
		e2e_fail "the demo server in the container did not start: $(cat "$E2E_WORK/out/server-a.log" 2>&1)"
	e2e_wait_for "$E2E_WORK/a/ferryd.log" "workload registered.*pid=$SERVER_PID" 10 ||
		e2e_fail "the demo server in the container did not register with ferryd on A"
	SERVER_ADDRESS=$(e2e_py field "$E2E_WORK/out/server-a.out" listening address)
	e2e_say "demo server in container $E2E_CONTAINER: host pid $SERVER_PID, $SERVER_ADDRESS, registered through the handoff socket"
}

# e2e_container_migrate RUNTIME [EXTRA MIGRATE ARGS...]: ferry migrate
# --container on A to B, waiting for the end; the server on B writes to
# WORK/out/server-b.{out,log} and registers with B's agent.
e2e_container_migrate() {
	local runtime=$1
	shift
	e2e_ferry a migrate --container "$E2E_CONTAINER" --runtime "$runtime" --to "${E2E_TO:-${AGENT_URL[b]}}" \
		--target-netns self --address "$SERVICE_CIDR@eth0" \
		--env "FERRY_HANDOFF_SOCKET=$E2E_WORK/handoff/b.sock" --env "DEMO_OUT=$E2E_WORK/out/server-b.out" \
		--env "DEMO_LOG=$E2E_WORK/out/server-b.log" "$@" \
		>"$E2E_WORK/migrate.json" 2>"$E2E_WORK/migrate.err" &
	MIGRATE_PID=$!
	e2e_track "$MIGRATE_PID"
	e2e_say "ferry migrate --container $E2E_CONTAINER --runtime $runtime $* started"
	# E2E_CONTAINER_MIGRATE_BACKGROUND=1: the caller waits (e2e_migrate_wait).
	[[ -n ${E2E_CONTAINER_MIGRATE_BACKGROUND:-} ]] || e2e_migrate_wait
}

# e2e_assert_container_committed CONNECTIONS: every check of a committed
# container migration that does not depend on the runtime: the result, the
# address, no lock, journals, the old server gone and its connections
# carried on by the server in the new container, verified both ways.
e2e_assert_container_committed() {
	local connections=$1
	e2e_check "ferry migrate exited 0 and the migration committed"
	((MIGRATE_STATUS == 0)) || e2e_fail "ferry migrate exited $MIGRATE_STATUS"
	e2e_py status "$E2E_WORK/migrate.json" --id "$MIGRATION_ID" --phase committed || e2e_fail "migrate result"
	e2e_py get "$E2E_WORK/migrate.json" connections >"$E2E_WORK/moved"
	e2e_check "sockets moved: $(cat "$E2E_WORK/moved") (the listener and $connections connections)"
	(($(cat "$E2E_WORK/moved") == connections + 1)) || e2e_fail "$(cat "$E2E_WORK/moved") sockets moved"
	BLACKOUT_US=$(e2e_py get "$E2E_WORK/migrate.json" blackoutUs)
	e2e_say "blackout $BLACKOUT_US us, lock window $(e2e_py get "$E2E_WORK/migrate.json" lockWindowUs) us, total $(e2e_py get "$E2E_WORK/migrate.json" totalUs) us"
	e2e_snapshot "$CLIENT_PID" "$E2E_WORK/client.out" progress "$E2E_WORK/client-after-commit.json"

	e2e_assert_address_on b "$SERVICE_ADDRESS" a
	e2e_assert_no_lock a b
	E2E_DONE_ID=$MIGRATION_ID e2e_assert_journals_retired a b
	e2e_assert_listed a "$MIGRATION_ID" committed
	e2e_assert_listed b "$MIGRATION_ID" committed

	e2e_check "the source container's processes are gone (server pid $SERVER_PID)"
	# Dead is enough: the container's init, started by the test's runc, is
	# reaped by this machine's pid 1, which may take its time; a zombie
	# holds no socket.
	local state="" i
	for ((i = 0; i < 40; i++)); do
		state=$(awk '{print $3}' "/proc/$SERVER_PID/stat" 2>/dev/null || true)
		[[ -z $state || $state == Z ]] && break
		sleep 0.05
	done
	[[ -z $state || $state == Z ]] ||
		e2e_fail "the server in the source container (pid $SERVER_PID) still runs (state $state)"
	[[ -z $(e2e_workloads_in a) ]] || e2e_fail "processes left in A's namespace: $(e2e_workloads_in a | tr '\n' ' ')"
	e2e_check "the server in B's container took over: it registered with B's agent"
	e2e_wait_for "$E2E_WORK/out/server-b.out" '"listening"' 10 ||
		e2e_fail "no server output on B: $(cat "$E2E_WORK/out/server-b.log" 2>&1)"
	e2e_wait_for "$E2E_WORK/b/ferryd.log" "workload registered" 10 ||
		e2e_fail "the server in B's container did not register with B's agent"
	local servers
	servers=$(e2e_workloads_in b)
	[[ -n $servers ]] || e2e_fail "no process of the new container in B's namespace"
	NEW_SERVER_PID=$(grep -o 'workload registered.*pid=[0-9]*' "$E2E_WORK/b/ferryd.log" | tail -n 1 | sed 's/.*pid=//')
	grep -qx "$NEW_SERVER_PID" <<<"$servers" || e2e_fail "the registered server ($NEW_SERVER_PID) is not in B's namespace: $servers"
	e2e_check "the server on B holds the $connections connections (ss in B)"
	local held
	held=$(e2e_in b ss -Htnp state established "( sport = :${SERVER_ADDRESS##*:} )" | grep -c "pid=$NEW_SERVER_PID," || true)
	((held == connections)) || e2e_fail "the server on B holds $held connections: $(e2e_in b ss -tnp)"
	[[ -n ${E2E_DEBUG:-} ]] && e2e_in b ss -tnp >&2

	sleep "${E2E_AFTER_SECONDS:-1.5}"
	if [[ -n ${E2E_NO_DRAIN:-} ]]; then
		# The client's final drain needs the server's FIN, which a podman
		# container cannot send while conmon holds copies of its
		# inherited sockets: compare two progress reports instead.
		e2e_snapshot "$CLIENT_PID" "$E2E_WORK/client.out" progress "$E2E_WORK/client-later.json"
		e2e_check "client: all $connections connections alive, zero errors, bytes verified both ways after the commit"
		STALL_MS=$(python3 - "$E2E_WORK/client-after-commit.json" "$E2E_WORK/client-later.json" "$connections" <<'PY'
import json, sys
before, after, n = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
t = after["totals"]
print(f"    client progress: {t}", file=sys.stderr)
if t["connections"] != n or t["alive"] != n or t["errors"] != 0:
    sys.exit(f"client: {t}")
old = {c["id"]: c for c in before["connections"]}
for c in after["connections"]:
    if c.get("error") or c["bytesVerified"] <= old[c["id"]]["bytesVerified"] or c["bytesSent"] <= old[c["id"]]["bytesSent"]:
        sys.exit(f"connection {c['id']} did not carry on: {c}")
print(t["longestStallMs"])
PY
		) || e2e_fail "client progress after the commit"
	else
		e2e_stop_client
		e2e_check "client: all $connections connections alive, zero errors, bytes verified both ways after the commit"
		e2e_py client-report "$E2E_WORK/client.out" --status "$CLIENT_STATUS" --connections "$connections" \
			--grew-since "$E2E_WORK/client-after-commit.json" || e2e_fail "client report"
		STALL_MS=$(python3 -c 'import json,sys
r=[json.loads(l) for l in open(sys.argv[1]) if l.startswith("{") and "\"report\"" in l][-1]
print(r["totals"]["longestStallMs"])' "$E2E_WORK/client.out")
	fi
	e2e_say "longest stall the client saw: $STALL_MS ms"
	e2e_stop_server "$NEW_SERVER_PID" "$E2E_WORK/out/server-b.out"
	e2e_check "the server on B: zero errors, $connections adopted connections with inherited offsets"
	e2e_py server-final "$E2E_WORK/out/server-b.out" --connections "$connections" --inherited ||
		e2e_fail "server on B"
}

# e2e_podman_agent_config HOST ROOT RUNROOT: the podman configuration of
# HOST's agent, the same as ct_podman's global flags (cgroupfs, a file
# event log, the libpod tmp dir in the runroot, overlay), so that the
# agent's podman and the test's see one storage alike. The agent has no
# flag for global podman options: it gets them as CONTAINERS_CONF and
# CONTAINERS_STORAGE_CONF files.
e2e_podman_agent_config() {
	local host=$1 root=$2 runroot=$3 dir=$E2E_WORK/podman-$1
	mkdir -p "$dir" "$runroot/libpod-tmp"
	printf '[engine]\ncgroup_manager = "cgroupfs"\nevents_logger = "file"\ntmp_dir = "%s"\n' \
		"$runroot/libpod-tmp" >"$dir/containers.conf"
	printf '[storage]\ndriver = "overlay"\ngraphroot = "%s"\nrunroot = "%s"\n' "$root" "$runroot" >"$dir/storage.conf"
	declare -g "E2E_PODMAN_ROOT_$host=$root" "E2E_PODMAN_RUNROOT_$host=$runroot"
}

# e2e_podman_use HOST: ct_podman works on HOST's storage from now on.
e2e_podman_use() {
	local root=E2E_PODMAN_ROOT_$1 runroot=E2E_PODMAN_RUNROOT_$1
	CT_PODMAN_ROOT=${!root}
	CT_PODMAN_RUNROOT=${!runroot}
}

# e2e_start_podman_agent HOST [FERRYD ARGS...]: ferryd on HOST with its
# podman storage and configuration and its handoff socket in WORK/handoff.
#
# Its podman runs in a namespace of its own (WORK/podman-in-runtime-netns,
# a wrapper given as --podman-binary), as it would on a real host, where
# the agent and the runtime live in the host's namespace and the
# container in another. Here B's agent targets its own namespace
# ("self"), and runc refuses podman's default net.* sysctls in what it
# takes for the host's namespace: the one it runs in.
e2e_start_podman_agent() {
	local host=$1 root=E2E_PODMAN_ROOT_$1 runroot=E2E_PODMAN_RUNROOT_$1
	shift
	local wrapper=$E2E_WORK/podman-in-runtime-netns
	if [[ ! -x $wrapper ]]; then
		e2e_netns_add rt
		printf '#!/bin/sh\nexec nsenter --net=/run/netns/%s podman "$@"\n' "$(e2e_ns rt)" >"$wrapper"
		chmod 755 "$wrapper"
	fi
	E2E_AGENT_ENV=("CONTAINERS_CONF=$E2E_WORK/podman-$host/containers.conf"
		"CONTAINERS_STORAGE_CONF=$E2E_WORK/podman-$host/storage.conf") \
		e2e_start_agent "$host" --podman-binary "$wrapper" --podman-root "${!root}" --podman-runroot "${!runroot}" \
		--handoff-socket "$E2E_WORK/handoff/$host.sock" "$@"
}
