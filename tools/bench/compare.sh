#!/usr/bin/env bash
# Runs relay-bench against Relay (one process, and control plane + data plane split) and soketi
# (../shared/anchors/soketi/soketi.sh), alternating, on loopback; prints one JSON line per run
# to stdout and a summary table to stderr. Every command line it runs is echoed.
#
#   tools/bench/compare.sh [quick]     (quick: small sizes, for a smoke run)
#   COMPARE_SCENARIOS='fanout ...;connect ...' COMPARE_ROUNDS=3 tools/bench/compare.sh
#                                      (only these scenarios, each alternated that many times)
#   COMPARE_TARGETS='relay split' tools/bench/compare.sh   (only these targets)
#
# Targets: relay (one process), split (relay-controlplane + relay-dataplane), soketi, and
# reference: relay-reference, the physical reference (tools/bench/reference.cc: accept, upgrade,
# subscribe, one shared frame written to every subscriber, nothing else), run only for the
# connect and fanout scenarios, the ones it implements.
#
# A before/after claim needs both builds measured in the same session, alternated (check out the
# old one with `git worktree add` and run its own copy of this script): the machine's speed
# differs from day to day by more than most changes do (docs/benchmarks.md, 2026-12-03).
set -euo pipefail
cd "$(dirname "$0")/../.."
# Relay and the generator run in a network namespace of their own with only loopback, as soketi
# does (soketi.sh), so both servers start from a fresh port space and the same sysctls.
if [[ -z ${RELAY_BENCH_NETNS:-} && ${1:-} != quick ]] && unshare -n true 2>/dev/null; then
  exec unshare -n bash -c 'ip link set lo up; RELAY_BENCH_NETNS=1 exec "$0" "$@"' "$0" "$@"
fi
BIN=${RELAY_BIN_DIR:-build/bin}
SOKETI=${SOKETI_SH:-../shared/anchors/soketi/soketi.sh}
QUICK=${1:-}
# Three loopback ports, free at the time of the run: WebSocket, split HTTP API, gRPC.
free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
PORT=${RELAY_BENCH_PORT:-$(free_port)}
HTTP_PORT=$(free_port)
GRPC_PORT=$(free_port)
WORK=$(mktemp -d)
trap 'pkill -f "$BIN/relay --port $PORT" 2>/dev/null || true; pkill -f "$BIN/relay-reference --port $PORT" 2>/dev/null || true; pkill -f "$BIN/relay-controlplane --port $HTTP_PORT" 2>/dev/null || true; pkill -f "$BIN/relay-dataplane --port $PORT" 2>/dev/null || true; rm -rf "$WORK"' EXIT

wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }

start_relay() {
  rm -rf "$WORK/data"
  "$BIN/relay" --port "$PORT" --grpc-port $GRPC_PORT --data-dir "$WORK/data" --trigger-rate-limit 0 \
    >"$WORK/relay.log" 2>&1 &
  wait_port "$PORT"; sleep 0.5
  "$BIN/relayctl" --server 127.0.0.1:$GRPC_PORT --data-dir "$WORK/data" apps update app-id \
    --max-client-events-per-second 1000 >/dev/null
  RELAY_PID=$(pgrep -f "$BIN/relay --port $PORT" | head -1)
}
stop_relay() { pkill -INT -f "$BIN/relay --port $PORT" || true; sleep 1; }

start_split() {
  rm -rf "$WORK/cp"
  "$BIN/relay-controlplane" --port $HTTP_PORT --grpc-port $GRPC_PORT --data-dir "$WORK/cp" \
    --trigger-rate-limit 0 >"$WORK/cp.log" 2>&1 &
  wait_port $HTTP_PORT
  "$BIN/relay-dataplane" --port "$PORT" --control-plane 127.0.0.1:$GRPC_PORT --node-id bench \
    --node-token-file "$WORK/cp/node.token" >"$WORK/dp.log" 2>&1 &
  wait_port "$PORT"; sleep 1
  "$BIN/relayctl" --server 127.0.0.1:$GRPC_PORT --data-dir "$WORK/cp" apps update app-id \
    --max-client-events-per-second 1000 >/dev/null
  RELAY_PID=$(pgrep -f "$BIN/relay-dataplane --port $PORT" | head -1)
}
stop_split() {
  pkill -INT -f "$BIN/relay-dataplane --port $PORT" || true
  pkill -INT -f "$BIN/relay-controlplane --port $HTTP_PORT" || true
  sleep 1
}

start_reference() {
  "$BIN/relay-reference" --port "$PORT" --threads "$(nproc)" >"$WORK/reference.log" 2>&1 &
  wait_port "$PORT"
  RELAY_PID=$(pgrep -f "$BIN/relay-reference --port $PORT" | head -1)
}
stop_reference() { pkill -INT -f "$BIN/relay-reference --port $PORT" || true; sleep 1; }

run() {  # run TARGET SCENARIO ARGS...
  local target=$1; shift
  local cmd
  case $target in
    soketi) cmd=("$SOKETI" exec "$(pwd)/$BIN/relay-bench" "$@" --port 6001 --pid "$(bash "$SOKETI" pid)") ;;
    split) cmd=("$BIN/relay-bench" "$@" --port "$PORT" --http-port $HTTP_PORT --pid "$RELAY_PID") ;;
    *) cmd=("$BIN/relay-bench" "$@" --port "$PORT" --pid "$RELAY_PID") ;;
  esac
  echo "+ ${cmd[*]}" >&2
  local out
  out=$("${cmd[@]}" --json) || true
  echo "{\"target\":\"$target\",\"args\":\"$*\",\"result\":$out}"
}

if [[ $QUICK == quick ]]; then
  SCENARIOS=("connect --connections 200 --connect-rate 1000"
             "fanout --connections 100 --channels 10 --rate 50 --duration 1"
             "presence --connections 50 --channels 5 --duration 1"
             "client-events --connections 20 --channels 5 --rate 50 --duration 1")
  TARGETS=(relay reference)
else
  SCENARIOS=("connect --connections 10000 --connect-rate 2000 --hold 2"
             "connect --connections 10000 --connect-rate 30000"
             "fanout --connections 2000 --channels 20 --rate 500 --duration 10 --publishers 16"
             "fanout --connections 2000 --channels 20 --rate 1000 --duration 10 --publishers 16"
             "fanout --connections 2000 --channels 20 --rate 2000 --duration 10 --publishers 16"
             "fanout --connections 2000 --channels 20 --rate 3000 --duration 10 --publishers 16"
             "fanout --connections 5000 --channels 5 --rate 300 --duration 10 --publishers 16"
             "fanout --connections 5000 --channels 5 --rate 500 --duration 10 --publishers 16"
             "fanout --connections 1 --channels 1 --rate 40000 --duration 5 --publishers 32"
             "presence --connections 500 --channels 10 --duration 3"
             "client-events --connections 200 --channels 20 --rate 2000 --duration 10")
  read -r -a TARGETS <<<"${COMPARE_TARGETS:-relay soketi split}"
  if [[ -n ${COMPARE_SCENARIOS:-} ]]; then IFS=';' read -r -a SCENARIOS <<<"$COMPARE_SCENARIOS"; fi
  [[ " ${TARGETS[*]} " != *" soketi "* ]] || bash "$SOKETI" start >&2
fi

for s in "${SCENARIOS[@]}"; do
  for _ in $(seq 1 "${COMPARE_ROUNDS:-1}"); do
  for target in "${TARGETS[@]}"; do
    [[ $target != reference || $s == connect* || $s == fanout* ]] || continue
    # A fresh server for every run, so runs do not inherit each other's state.
    case $target in relay) start_relay ;; split) start_split ;; reference) start_reference ;; esac
    # shellcheck disable=SC2086
    run "$target" $s
    case $target in relay) stop_relay ;; split) stop_split ;; reference) stop_reference ;; esac
  done
  done
done
[[ $QUICK == quick || " ${TARGETS[*]} " != *" soketi "* ]] || bash "$SOKETI" stop >&2
