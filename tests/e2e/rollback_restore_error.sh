#!/usr/bin/env bash
# Case 4d: the restore fails on B (destination.restore=error). B drops
# what it built and answers the upload with the error; A aborts and the
# connections carry on at A.
. "$(dirname "$0")/lib.sh"
e2e_init "$@"
FAILPOINTS_B='destination.restore=error' e2e_rollback_setup
e2e_migrate "$SERVICE_CIDR"
e2e_assert_rolled_back "$SERVICE_ADDRESS" "destination.restore"
E2E_DONE_ID=$MIGRATION_ID e2e_assert_journals_retired b
e2e_assert_status b "$MIGRATION_ID" aborted
