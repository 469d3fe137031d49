#!/usr/bin/env bash
# Runs every test: the C++ suites under ctest (unit and end-to-end) and the conformance suite
# with real pusher-js and pusher SDK clients. Exits non-zero on any failure.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
status=0
(cd build && ctest --output-on-failure -j2 --timeout 300) || status=1
RELAY_BIN_DIR="$(pwd)/build/bin" tests/conformance/run.sh || status=1
tests/bench_smoke.sh || status=1
if [[ $status -ne 0 ]]; then echo "SOME TESTS FAILED"; fi
exit $status
