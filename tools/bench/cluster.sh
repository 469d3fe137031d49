# shellcheck shell=bash
# Sourced by scale.sh and storm.sh: a loopback cluster (one relay-controlplane, data planes
# attached to it) in a network namespace of the run's own, and the helpers both read it with.
# Needs BIN (the binaries' dir) and WORK (a scratch dir) set; every process started is appended
# to `pids`, which the cleanup interrupts.

# Re-runs the calling script in a network namespace with only loopback (as compare.sh does), so
# the sources' ephemeral ports are all free; nothing when one cannot be made (unprivileged).
bench_netns() {
  if [[ -z ${RELAY_BENCH_NETNS:-} ]] && unshare -n true 2>/dev/null; then
    exec unshare -n bash -c 'ip link set lo up; RELAY_BENCH_NETNS=1 exec "$0" "$@"' "$0" "$@"
  fi
}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [[ -n ${WORK:-} ]]; then rm -rf "$WORK"; fi
}
trap cleanup EXIT

free_port() { node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'; }
wait_port() { for _ in $(seq 1 100); do (exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
say() { echo "+ $*" >&2; }
# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss_kib() { awk '/^VmRSS:/{print $2}' "/proc/$1/status"; }

# start_cluster N [DATA PLANE FLAGS...]: the control plane (HTTP API on cp_http, gRPC on
# cp_grpc, pid cp_pid, no trigger rate limit) and N data planes dp1..dpN (dp_ports, dp_pids),
# returning once every data plane has attached.
start_cluster() {
  local n=$1 k port
  shift
  cp_http=$(free_port) cp_grpc=$(free_port)
  say "$BIN/relay-controlplane --port $cp_http --grpc-port $cp_grpc --data-dir $WORK/cp --trigger-rate-limit 0"
  "$BIN/relay-controlplane" --port "$cp_http" --grpc-port "$cp_grpc" --data-dir "$WORK/cp" \
    --trigger-rate-limit 0 >"$WORK/cp.log" 2>&1 &
  cp_pid=$!
  pids+=("$cp_pid")
  wait_port "$cp_http"
  dp_ports=() dp_pids=()
  for k in $(seq 1 "$n"); do
    port=$(free_port)
    say "$BIN/relay-dataplane --port $port --control-plane 127.0.0.1:$cp_grpc --node-id dp$k $*"
    "$BIN/relay-dataplane" --port "$port" --control-plane "127.0.0.1:$cp_grpc" --node-id "dp$k" \
      --node-token-file "$WORK/cp/node.token" "$@" >"$WORK/dp$k.log" 2>&1 &
    dp_pids+=($!)
    pids+=($!)
    dp_ports+=("$port")
  done
  for k in $(seq 1 "$n"); do
    wait_port "${dp_ports[k - 1]}"
    for _ in $(seq 1 100); do grep -q "attached to control plane" "$WORK/dp$k.log" && break; sleep 0.1; done
  done
}
