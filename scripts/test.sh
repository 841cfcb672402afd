#!/usr/bin/env bash
# The test command: installs what is missing, builds, and runs every test,
# then the decoder fuzzer for a bounded time.
#
#   bash scripts/test.sh            # everything
#   FUZZ_SECONDS=10 bash scripts/test.sh
#
# Privileged tests (namespaces, nftables, TCP_REPAIR) need root. Without
# root they skip (exit 77); with CI=true a skip fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-deps.sh

build=${BUILD_DIR:-build}
if [[ ! -f "$build/build.ninja" ]]; then
  meson setup "$build"
fi
ninja -C "$build"

meson test -C "$build" --print-errorlogs --num-processes 2

if [[ "${CI:-}" == "true" ]]; then
  # meson counts exit 77 as a skip; in CI a skipped privileged test is a failure.
  skipped=$(grep -c '"result": "SKIP"' "$build/meson-logs/testlog.json" || true)
  if ((skipped > 0)); then
    echo "test.sh: $skipped test(s) skipped under CI=true; privileged tests must run" >&2
    exit 1
  fi
fi

fuzz_seconds=${FUZZ_SECONDS:-60}
if ((fuzz_seconds > 0)); then
  fuzz_build=${FUZZ_BUILD_DIR:-build-fuzz}
  if [[ ! -f "$fuzz_build/build.ninja" ]]; then
    CXX=clang++-14 CC=clang-14 meson setup "$fuzz_build" -Dfuzzing=true -Db_lundef=false
  fi
  ninja -C "$fuzz_build"
  bash tests/fuzz/run.sh "$fuzz_build" "$fuzz_seconds"
fi
echo "test.sh: all tests passed"
