#!/usr/bin/env bash
# Runs one Relay binary from the image under test in place of the host's: the container test
# points the conformance harness (RELAY_BIN_DIR) at wrappers that exec this. Host network, the
# data dir and node token file of the command line mounted at the same path and handed to the
# image's non-root user, RELAY_* settings passed through. Signals reach the server through
# podman's signal proxy; tests/container/run.sh removes whatever a SIGKILL left behind.
# usage: in-container.sh BINARY ARGS...    (env: RELAY_CT_IMAGE, RELAY_CT_LABEL, RELAY_CT_UID)
set -euo pipefail
binary=$1
shift
mounts=()
env_args=()
args=("$@")
for ((i = 0; i < ${#args[@]}; i++)); do
  case ${args[i]} in
    --data-dir) dir=${args[i + 1]} ;;
    --data-dir=*) dir=${args[i]#--data-dir=} ;;
    --node-token-file) dir=$(dirname "${args[i + 1]}") ;;
    --node-token-file=*) dir=$(dirname "${args[i]#--node-token-file=}") ;;
    *) continue ;;
  esac
  mkdir -p "$dir"
  chown -R "$RELAY_CT_UID" "$dir"   # the image's user owns its data dir, as on a real volume
  mounts+=(-v "$dir:$dir")
done
while IFS='=' read -r name _; do
  [[ $name == RELAY_CT_* || $name == RELAY_BIN_DIR || $name == RELAY_NPM_DONE ]] && continue
  env_args+=(-e "$name")
done < <(env | grep '^RELAY_' || true)
# Loopback: with the host's network, 0.0.0.0 (the image's default) would face the machine's
# interfaces, and relay rightly refuses that with the well-known test secret.
exec podman run --rm --health-interval=disable --network host --label "$RELAY_CT_LABEL" -e RELAY_HOST=127.0.0.1 \
  "${env_args[@]}" "${mounts[@]}" "$RELAY_CT_IMAGE" "$binary" "${args[@]}"
