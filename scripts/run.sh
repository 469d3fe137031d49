#!/usr/bin/env bash
# Installs what is missing, builds, and starts `relay` with the default app (app-id/app-key/app-secret).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/build.sh
exec build/bin/relay "$@"
