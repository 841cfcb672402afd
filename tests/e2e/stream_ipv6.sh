#!/usr/bin/env bash
# Case 2: the streaming migration of case 1 over IPv6: the service address
# 2001:db8::10/64 moves from A to B (B announces it with an unsolicited
# neighbour advertisement, or the client would keep sending to A's MAC).
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
e2e_committed_migration 2001:db8::10/64 '[2001:db8::10]:0' 4 256k
