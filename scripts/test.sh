#!/usr/bin/env bash
# Runs every test: the C++ suites under ctest (unit and end-to-end) and the conformance suite
# with real pusher-js and pusher SDK clients. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
status=0
# Each stage's start and the time spent in the one before, so that a slow CI run shows where its
# minutes went (CI's budget is 45 minutes for all of this).
stage_name='' stage_start=$SECONDS timings=''
stage() {
  if [[ -n $stage_name ]]; then timings+="$stage_name $((SECONDS - stage_start)) s; "; fi
  stage_name=$1 stage_start=$SECONDS
  [[ $1 == end ]] || echo "== test: $1 ($(date -u +%H:%M:%S))"
}
# check COMMAND...: runs a check of the current stage; its output is also kept, so that the end of
# the run (all a CI page may show) can name the failed stages and their failing tests.
logs=build/test-logs failed=()
rm -rf "$logs" && mkdir -p "$logs"
check() {
  if ! "$@" 2>&1 | tee -a "$logs/${stage_name// /-}.log"; then
    status=1
    [[ " ${failed[*]} " == *" $stage_name "* ]] || failed+=("$stage_name")
  fi
}
cluster_repeat() {
  local i
  for i in $(seq 1 10); do
    (cd tests/conformance && RELAY_NPM_DONE=1 RELAY_BIN_DIR="$OLDPWD/build/bin" \
      ./run.sh cluster*.test.js replicas.test.js failover.test.js) \
      >/tmp/relay-cluster-repeat.log 2>&1 || { echo "cluster run $i failed"; cat /tmp/relay-cluster-repeat.log; return 1; }
  done
}
stage format
# The tree keeps one style (.clang-format); cheap, so it runs first.
check scripts/format.sh --check
stage build
scripts/build.sh
stage ctest
# A test that fails is run once more (the etcd and replica tests time real processes on a shared
# machine); the end of the run lists every test that needed it, so a flaky one stays visible.
check bash -c "cd build && ctest --output-on-failure -j2 --timeout 300 --repeat until-pass:2"
stage conformance
check env RELAY_BIN_DIR="$(pwd)/build/bin" tests/conformance/run.sh
# The multi-node tests must hold up run after run: ten times in a row, in-process and with
# real processes (every tests/conformance/cluster*.test.js: delivery, presence, counts, webhooks,
# control plane restart, hang, kill, drain; and the control plane replicas on etcd: leader
# SIGKILL and SIGSTOP, presence through failover, an etcd member killed, etcd quorum lost).
stage "multi-node repeat"
repeat_start=$SECONDS
check build/bin/e2e_test --gtest_filter='Cluster.*' --gtest_repeat=10 --gtest_brief=1
check cluster_repeat
echo "multi-node repeat: done in $((SECONDS - repeat_start)) s"
stage "bench smoke"
check tests/bench_smoke.sh
# The image: built from the Dockerfile with podman, the conformance skeleton and the compose
# topology run from it (docs/deploy.md). Bounded: a from-scratch build is most of it.
stage container
check timeout "${RELAY_CONTAINER_TEST_TIMEOUT:-1800}" tests/container/run.sh
# Hostile input: the ASan + UBSan build, the fuzz targets, ctest and the conformance suite on it.
stage sanitizers
check scripts/sanitize.sh
stage end
echo "time per stage: $timings"
if grep -aE 'Test +#[0-9]+: .*\*\*\*(Failed|Timeout|Exception)' "$logs"/*.log >/dev/null; then
  echo "Tests that failed once and were run again (ctest, sanitizer ctest; passed the second time unless listed below):"
  grep -ahE 'Test +#[0-9]+: .*\*\*\*(Failed|Timeout|Exception)' "$logs"/*.log | sed -E 's/ \.{3,}/ /' | sort | uniq -c
fi
for s in "${failed[@]}"; do
  echo "FAILED stage: $s; what failed in it (whole output above, and in $logs):"
  { grep -aE -A12 'The following tests FAILED' "$logs/${s// /-}.log" || true; } | head -30
  grep -aE '^\s*✖|\[  FAILED  \]|FUZZ FAILURE|SANITIZER REPORTS|ERROR: (Address|Leak)Sanitizer|runtime error:|cluster run [0-9]+ failed|bench smoke: |^FAIL|not formatted:|error:' \
    "$logs/${s// /-}.log" | sort | uniq -c | sort -rn | head -30 || true
done
if [[ $status -ne 0 ]]; then echo "SOME TESTS FAILED"; fi
exit $status
