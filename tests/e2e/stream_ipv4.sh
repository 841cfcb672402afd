#!/usr/bin/env bash
# Case 1: a streaming migration over IPv4. Four connections stream
# checksummed, sequence-numbered data both ways while the demo server and
# its address 198.51.100.10 move from A to B; the client must verify bytes
# in both directions after the commit and see no error, and nothing of the
# migration may remain on either host.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
e2e_committed_migration 198.51.100.10/24 198.51.100.10:0 4 256k
