#!/usr/bin/env bash
echo "oci_hook: not written yet" >&2
exit 1
