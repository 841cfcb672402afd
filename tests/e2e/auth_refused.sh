#!/usr/bin/env bash
# Case 5: authentication. With a bearer token configured, a request
# without it or with a wrong one is refused: the CLI exits 4 and ferryd
# logs the 401. With TLS and a client CA, a client certificate from another
# CA (or none) is refused at the handshake, and the right one works. When
# the destination refuses the source agent's token, `ferry migrate` exits 4
# as well, though the source agent accepted the CLI: the migration aborts
# at negotiation with the destination's 401 as its reason.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"

# --- bearer token (agent on B, the CLI on A) ---
e2e_start_agent b
url=${AGENT_URL[b]}
cli() { e2e_in a "$FERRY" --agent "$url" -o json "$@"; }

expect_exit() { # EXPECTED DESCRIPTION COMMAND...
	local expected=$1 what=$2 code=0
	shift 2
	"$@" >"$E2E_WORK/cli.out" 2>"$E2E_WORK/cli.err" || code=$?
	e2e_check "$what: exit $expected"
	sed 's/^/    ferry: /' "$E2E_WORK/cli.err"
	((code == expected)) || e2e_fail "$what: ferry exited $code, expected $expected: $(cat "$E2E_WORK/cli.out")"
}
count_401() { grep -c 'status=401' "$E2E_WORK/b/ferryd.log" || true; }

expect_exit 4 "ferry list without a token" cli list
(($(count_401) >= 1)) || e2e_fail "ferryd logged no 401 for the request without a token"
e2e_check "ferryd logged the 401: $(grep 'status=401' "$E2E_WORK/b/ferryd.log" | tail -n 1)"
grep -qi "token" "$E2E_WORK/cli.err" || e2e_fail "the CLI's message does not mention the token"

before=$(count_401)
head -c 32 /dev/urandom | base64 | tr -d '\n' >"$E2E_WORK/wrong-token"
expect_exit 4 "ferry list with a wrong token" cli --token-file "$E2E_WORK/wrong-token" list
(($(count_401) > before)) || e2e_fail "ferryd logged no 401 for the wrong token"
e2e_check "ferryd logged a second 401"
expect_exit 4 "ferry status with a wrong token" cli --token-file "$E2E_WORK/wrong-token" status m-1
expect_exit 0 "ferry list with the right token" cli --token-file "$TOKEN" list

# --- mutual TLS (agent on A, the CLI on the client host) ---
pki=$E2E_WORK/pki
mkdir -p "$pki"
key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$1" 2>/dev/null; }
ca() { # NAME
	key "$pki/$1.key"
	openssl req -x509 -new -key "$pki/$1.key" -out "$pki/$1.pem" -days 1 -subj "/CN=ferry e2e $1" 2>/dev/null
}
cert() { # NAME CA EXTENSIONS
	key "$pki/$1.key"
	openssl req -new -key "$pki/$1.key" -out "$pki/$1.csr" -subj "/CN=ferry e2e $1" 2>/dev/null
	printf '%s\n' "$3" >"$pki/$1.ext"
	openssl x509 -req -in "$pki/$1.csr" -CA "$pki/$2.pem" -CAkey "$pki/$2.key" -CAcreateserial \
		-out "$pki/$1.pem" -days 1 -extfile "$pki/$1.ext" 2>/dev/null
}
ca ca
ca other-ca
cert server ca $'subjectAltName=IP:198.51.100.1\nextendedKeyUsage=serverAuth'
cert client ca 'extendedKeyUsage=clientAuth'
cert intruder other-ca 'extendedKeyUsage=clientAuth'
e2e_say "made a CA, a server certificate for 198.51.100.1, a client certificate, and one from another CA"

E2E_AGENT_AUTH=(--tls-cert "$pki/server.pem" --tls-key "$pki/server.key" --client-ca "$pki/ca.pem")
# api=debug: every request is logged, GETs that succeed included.
e2e_start_agent a --log api=debug,info
url=${AGENT_URL[a]}
[[ $url == https://* ]] || e2e_fail "ferryd with --tls-cert serves $url, not https"
tls() { e2e_in c "$FERRY" --agent "$url" --cacert "$pki/ca.pem" -o json "$@"; }

expect_exit 0 "ferry list with the CA's client certificate" tls --cert "$pki/client.pem" --key "$pki/client.key" list
e2e_py get "$E2E_WORK/cli.out" migrations >/dev/null || e2e_fail "ferry list printed no migrations array"
# A refused handshake is a TLS failure, which the CLI reports as "cannot
# reach the agent" (exit 3, docs: connection, TLS, timeout): no HTTP
# exchange happens, so there is no 401 to map to 4.
expect_exit 3 "ferry list with a client certificate from another CA" \
	tls --cert "$pki/intruder.pem" --key "$pki/intruder.key" list
expect_exit 3 "ferry list without a client certificate" tls list
e2e_check "ferryd on A served one request, the certified client's, and none to the refused ones"
requests=$(grep -c 'api: request' "$E2E_WORK/a/ferryd.log" || true)
((requests == 1)) || e2e_fail "ferryd on A logged $requests requests: $(grep 'api: request' "$E2E_WORK/a/ferryd.log")"
e2e_check "both agents are still alive"
kill -0 "${AGENT_PID[a]}" && kill -0 "${AGENT_PID[b]}" || e2e_fail "an agent died"

# --- the destination refuses the source agent's token (agents on A and B) ---
# ferryd calls its peers with its own --token-file. B now expects another
# token than A has, so A's negotiation gets a 401; the CLI, whose token A
# accepts, must exit 4 (refused), not 1 (failed), and nothing moves.
e2e_kill_agent a
e2e_kill_agent b
head -c 32 /dev/urandom | base64 | tr -d '\n' >"$E2E_WORK/b-token"
E2E_AGENT_AUTH=(--token-file "$E2E_WORK/b-token")
e2e_start_agent b
unset E2E_AGENT_AUTH
e2e_start_agent a
SERVICE_CIDR=198.51.100.10/24
SERVICE_ADDRESS=198.51.100.10
e2e_address_add a "$SERVICE_CIDR"
e2e_start_server 198.51.100.10:0 256k
e2e_start_client 2 256k
before=$(count_401)
e2e_migrate "$SERVICE_CIDR"
e2e_check "ferry migrate exited 4 (the destination refused the source agent's token), not 1"
((MIGRATE_STATUS == 4)) || e2e_fail "ferry migrate exited $MIGRATE_STATUS, expected 4"
[[ -n $MIGRATION_ID ]] || e2e_fail "ferry migrate -o json printed no migration id"
e2e_py status "$E2E_WORK/migrate.json" --id "$MIGRATION_ID" --phase aborted --error "status=401" ||
	e2e_fail "the migrate result is not the aborted MigrationStatus with B's 401"
grep -q "^ferry migrate: migration $MIGRATION_ID aborted: authentication refused" "$E2E_WORK/migrate.err" ||
	e2e_fail "no reason on stderr"
grep -q "^ferry migrate: the destination ${AGENT_URL[b]} refused the credentials of the source agent" \
	"$E2E_WORK/migrate.err" || e2e_fail "no hint about the agents' token on stderr"
e2e_check "B logged the 401 for A's negotiation"
(($(count_401) > before)) && grep -q 'path=/v1/incoming status=401' "$E2E_WORK/b/ferryd.log" ||
	e2e_fail "no 401 for /v1/incoming in B's log"
e2e_check "ferry status $MIGRATION_ID on A exits 4 too"
code=0
e2e_ferry a status "$MIGRATION_ID" >"$E2E_WORK/status-a.json" 2>"$E2E_WORK/status-a.err" || code=$?
((code == 4)) || e2e_fail "ferry status exited $code, expected 4: $(cat "$E2E_WORK/status-a.err")"
e2e_assert_address_on a "$SERVICE_ADDRESS" b
e2e_assert_no_lock a b
e2e_snapshot "$CLIENT_PID" "$E2E_WORK/client.out" progress "$E2E_WORK/client-after.json"
sleep 1
e2e_stop_client
e2e_check "the client: every connection alive, zero errors, bytes verified after the refusal"
e2e_py client-report "$E2E_WORK/client.out" --status "$CLIENT_STATUS" --connections 2 \
	--grew-since "$E2E_WORK/client-after.json" || e2e_fail "client report"
