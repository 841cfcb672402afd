#!/usr/bin/env bash
# Case 3: 100 connections in one migration, each streaming slowly (8 KiB/s
# each way), so every one of them has data in flight and must be verified
# after the commit.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
E2E_BEFORE_SECONDS=2 E2E_AFTER_SECONDS=2 e2e_committed_migration 198.51.100.10/24 198.51.100.10:0 100 8k
