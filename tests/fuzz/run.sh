#!/usr/bin/env bash
# Runs the image decoder fuzzer for a bounded time on a copy of the
# committed corpus, and fails on any crash, leak, timeout or OOM.
#
#   bash tests/fuzz/run.sh BUILD_DIR SECONDS
#
# BUILD_DIR was configured with -Dfuzzing=true (clang-14). New inputs the
# fuzzer finds stay in the temporary copy; crash artifacts are kept in
# BUILD_DIR/fuzz-artifacts/. To keep a crash as a regression test, fix
# the bug, then copy the artifact into tests/fuzz/corpus/image_reader/
# (the unit test transport/image_corpus replays it in the normal build).
set -euo pipefail

if (($# != 2)); then
  echo "usage: $0 BUILD_DIR SECONDS" >&2
  exit 2
fi
build=$1
seconds=$2
here=$(cd "$(dirname "$0")" && pwd)
fuzzer="$build/tests/fuzz/image_reader_fuzz"
corpus="$here/corpus/image_reader"

[[ -x "$fuzzer" ]] || { echo "run.sh: $fuzzer not built (ninja -C $build)" >&2; exit 1; }
[[ -d "$corpus" ]] || { echo "run.sh: no corpus at $corpus" >&2; exit 1; }

work=$(mktemp -d /tmp/ferry-fuzz.XXXXXX)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$work/artifacts"
cp -- "$corpus"/* "$work/corpus/"

# UBSan must stop at the first report, or a UB finding would not fail the run.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1:suppressions=$here/ubsan.supp}

status=0
"$fuzzer" \
  -max_total_time="$seconds" \
  -rss_limit_mb=2048 \
  -malloc_limit_mb=512 \
  -timeout=10 \
  -max_len=65536 \
  -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" \
  "$work/corpus" >"$work/log" 2>&1 || status=$?

if ((status != 0)) || [[ -n "$(ls -A "$work/artifacts")" ]]; then
  tail -n 200 "$work/log" >&2
  mkdir -p "$build/fuzz-artifacts"
  cp -- "$work/artifacts"/* "$build/fuzz-artifacts/" 2>/dev/null || true
  echo "run.sh: image_reader_fuzz failed (exit $status); artifacts in $build/fuzz-artifacts/" >&2
  exit 1
fi
grep -E '^(#[0-9]+.*DONE|stat::)' "$work/log" || tail -n 5 "$work/log"
echo "run.sh: image_reader_fuzz ran ${seconds}s without a crash"
