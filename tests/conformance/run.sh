#!/usr/bin/env bash
# Conformance suite: real pusher-js 8 and pusher 5 against the Relay binaries in $RELAY_BIN_DIR.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
exec node --test --test-concurrency=1 --test-reporter=spec ./*.test.js
