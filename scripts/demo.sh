#!/usr/bin/env bash
# The main job: installs what is missing, builds, and runs the two-host
# demo (containers/demo/two_host_demo.sh), which migrates live connections
# from host A to host B and prints what happened. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

build=${BUILD_DIR:-build}
if [[ ! -f "$build/build.ninja" ]]; then
  meson setup "$build"
fi
ninja -C "$build"

exec bash containers/demo/two_host_demo.sh "$build"
