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
stage format
# The tree keeps one style (.clang-format); cheap, so it runs first.
scripts/format.sh --check || status=1
stage build
scripts/build.sh
stage ctest
(cd build && ctest --output-on-failure -j2 --timeout 300) || status=1
stage conformance
RELAY_BIN_DIR="$(pwd)/build/bin" tests/conformance/run.sh || status=1
# The multi-node tests must hold up run after run: ten times in a row, in-process and with
# real processes (every tests/conformance/cluster*.test.js: delivery, presence, counts, webhooks,
# control plane restart, hang, kill, drain; and the control plane replicas on etcd: leader
# SIGKILL and SIGSTOP, presence through failover, an etcd member killed, etcd quorum lost).
stage "multi-node repeat"
repeat_start=$SECONDS
build/bin/e2e_test --gtest_filter='Cluster.*' --gtest_repeat=10 --gtest_brief=1 || status=1
for i in $(seq 1 10); do
  (cd tests/conformance && RELAY_NPM_DONE=1 RELAY_BIN_DIR="$OLDPWD/build/bin" \
    ./run.sh cluster*.test.js replicas.test.js failover.test.js) \
    >/tmp/relay-cluster-repeat.log 2>&1 || { echo "cluster run $i failed"; cat /tmp/relay-cluster-repeat.log; status=1; break; }
done
echo "multi-node repeat: done in $((SECONDS - repeat_start)) s"
stage "bench smoke"
tests/bench_smoke.sh || status=1
# The image: built from the Dockerfile with podman, the conformance skeleton and the compose
# topology run from it (docs/deploy.md). Bounded: a from-scratch build is most of it.
stage container
timeout "${RELAY_CONTAINER_TEST_TIMEOUT:-1800}" tests/container/run.sh || status=1
# Hostile input: the ASan + UBSan build, the fuzz targets, ctest and the conformance suite on it.
stage sanitizers
scripts/sanitize.sh || status=1
stage end
echo "time per stage: $timings"
if [[ $status -ne 0 ]]; then echo "SOME TESTS FAILED"; fi
exit $status
