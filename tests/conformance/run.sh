#!/usr/bin/env bash
# Conformance suite: real pusher-js 8 and pusher 5 against the Relay binaries in $RELAY_BIN_DIR.
# Extra arguments name test files (default: all). A test file ends once its tests are done, even
# when a client library leaves a timer behind (pusher-js's WebSocket library keeps a 30 s close
# timer after a 4xxx close), where Node supports it.
set -euo pipefail
cd "$(dirname "$0")"
[[ -n ${RELAY_NPM_DONE:-} ]] || npm ci --no-audit --no-fund --loglevel=error
force=()
node --test-force-exit -e '' 2>/dev/null && force=(--test-force-exit)
if (($# == 0)); then set -- ./*.test.js; fi
exec node --test "${force[@]}" --test-concurrency=1 --test-reporter=spec "$@"
