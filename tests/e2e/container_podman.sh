#!/usr/bin/env bash
echo "container_podman: not written yet" >&2
exit 1
