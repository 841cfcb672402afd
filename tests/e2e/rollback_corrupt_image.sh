#!/usr/bin/env bash
# Case 4c: the image is damaged on its way (source.image=corrupt on A), so
# B's decoder rejects it. B aborts its side and answers the upload with an
# error; A aborts and the connections carry on at A.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
FAILPOINTS_A='source.image=corrupt' e2e_rollback_setup
e2e_migrate "$SERVICE_CIDR"
e2e_assert_rolled_back "$SERVICE_ADDRESS" "image"
E2E_DONE_ID=$MIGRATION_ID e2e_assert_journals_retired b
e2e_assert_status b "$MIGRATION_ID" aborted
