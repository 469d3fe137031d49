#!/usr/bin/env bash
# The hostile-input checks: a clang build with AddressSanitizer + UndefinedBehaviorSanitizer
# (build-asan) that also holds the libFuzzer targets of tests/fuzz, then
#   1. each fuzz target for RELAY_FUZZ_SECONDS (default 20) s, after replaying its committed
#      corpus; new inputs go to a scratch dir, crashes to build-asan/fuzz-artifacts/;
#   2. the ctest suite (unit, end-to-end, corpus replays) against the sanitizer build (a failed
#      test is run once more, for timing; any sanitizer report fails the run regardless);
#   3. the conformance suite against the sanitizer binaries (RELAY_SANITIZE_CONFORMANCE: the test
#      files to run, "all", or "none" to skip it; by default every file but the replica failover
#      scenarios (replicas, failover, cluster-noloss, etcd-harness), whose minutes of timed faults
#      would only repeat the code paths that ctest's etcd and replica tests run on this build).
# Any sanitizer report fails the run: UBSan does not recover (-fno-sanitize-recover=all), ASan
# halts on the first error, and reports written by the binaries the conformance suite starts
# (which may be killed before their exit status is seen) are collected from log files.
set -euo pipefail
cd "$(dirname "$0")/.."
"$(pwd)/scripts/install-deps.sh"
fuzz_seconds=${RELAY_FUZZ_SECONDS:-20}
build=build-asan
export ASAN_OPTIONS=halt_on_error=1:abort_on_error=1:detect_leaks=1:strict_string_checks=1:detect_stack_use_after_return=1:check_initialization_order=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0
step() { echo "== sanitize: $1 ($(date -u +%H:%M:%S))"; }

step "build"
start=$SECONDS
# -O1 with line tables only, as the sanitizers' authors advise: reports keep file:line stacks, and
# the build takes less time than at -O2 -g (it is the longest part of CI).
cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_CXX_FLAGS_RELWITHDEBINFO="-O1 -gline-tables-only -DNDEBUG" \
  -DRELAY_SANITIZE=ON -DRELAY_FUZZ=ON >/dev/null
ninja -C "$build" -j"$(nproc)"
echo "sanitizer build: $((SECONDS - start)) s"

step "fuzz (${fuzz_seconds} s per target)"
start=$SECONDS
mkdir -p "$build/fuzz-artifacts"
for dir in tests/fuzz/corpus/*/; do
  target=$(basename "$dir")
  scratch=$(mktemp -d)
  mkdir "$scratch/new" "$scratch/tmp"
  # The committed corpus is only read: new inputs land in the scratch dir (listed first). The
  # in-process servers' data dirs go under it too (TMPDIR), so nothing is left in /tmp.
  if ! TMPDIR="$scratch/tmp" "$build/bin/$target" -max_total_time="$fuzz_seconds" -timeout=30 \
      -rss_limit_mb=2560 \
      -print_final_stats=1 -artifact_prefix="$build/fuzz-artifacts/$target-" \
      "$scratch/new" "$dir" >"$build/fuzz-artifacts/$target.log" 2>&1; then
    echo "FUZZ FAILURE in $target (input saved under $build/fuzz-artifacts/):"
    tail -n 80 "$build/fuzz-artifacts/$target.log"
    status=1
  else
    echo "$target: $(grep -E '^stat::number_of_executed_units' "$build/fuzz-artifacts/$target.log" | awk '{print $2}') runs, ok"
  fi
  rm -rf "$scratch"
done
echo "fuzzing: $((SECONDS - start)) s"

# Runs a command with the sanitizers' reports going to log files in DIR (a server the command
# starts may be killed before its exit status is seen), then prints any report and fails the run
# for it, whatever the command's own status: sanitized WHAT DIR COMMAND...
sanitized() {
  local what=$1 dir=$2
  shift 2
  rm -rf "$dir" && mkdir -p "$dir"
  ASAN_OPTIONS="$ASAN_OPTIONS${ASAN_EXTRA:-}:log_path=$dir/asan" \
    UBSAN_OPTIONS="$UBSAN_OPTIONS:log_path=$dir/ubsan" "$@" || status=1
  if compgen -G "$dir/*" >/dev/null; then
    echo "SANITIZER REPORTS from $what:"
    cat "$dir"/*
    status=1
  fi
}

step "ctest"
start=$SECONDS
# Everything runs 3-10 times slower here, so a test that fails is run once more (ctest prints
# both attempts); a sanitizer report fails the run whatever the retry says: the reports go to
# log files, collected below, as in the conformance run.
sanitized ctest "$(pwd)/$build/sanitizer-logs-ctest" \
  bash -c "cd $build && ctest --output-on-failure -j2 --timeout 600 --repeat until-pass:2"
echo "sanitizer ctest: $((SECONDS - start)) s"

conformance=${RELAY_SANITIZE_CONFORMANCE:-}
if [[ -z $conformance ]]; then
  conformance=$(cd tests/conformance && ls ./*.test.js |
    grep -vE '/(replicas|failover|cluster-noloss|etcd-harness)\.test\.js$' | tr '\n' ' ')
elif [[ $conformance == all ]]; then
  conformance=
fi
if [[ $conformance != none ]]; then
  step "conformance"
  start=$SECONDS
  # A small quarantine, so that the hostile suites' RSS bounds measure Relay rather than ASan
  # keeping freed memory aside (they double their bounds for the shadow memory: RELAY_SANITIZED).
  # shellcheck disable=SC2086
  ASAN_EXTRA=:quarantine_size_mb=16 RELAY_SANITIZED=1 RELAY_BIN_DIR="$(pwd)/$build/bin" \
    sanitized "the conformance run" "$(pwd)/$build/sanitizer-logs" \
    tests/conformance/run.sh $conformance
  echo "sanitizer conformance: $((SECONDS - start)) s"
fi
exit $status
