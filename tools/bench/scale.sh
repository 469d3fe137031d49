#!/usr/bin/env bash
# One point of the scale curve (docs/benchmarks.md, issue #16): one relay-controlplane and
# SCALE_DATAPLANES relay-dataplane processes on loopback, CONNECTIONS subscribers split evenly over
# them by one relay-bench `subscribe` process per data plane (each under the open-file limit, each
# from its own 127.0.0.x source address), on SCALE_CHANNELS public channels that span every data
# plane (client i of every process is on bench-<i % channels>); then one relay-bench `publish`
# process sends SCALE_RATE publishes/s for SCALE_DURATION s through the control plane's HTTP API.
# Prints one JSON line: connections held, deliveries expected and received (the ratio),
# deliveries/s, the worst subscriber process's p50/p99/max latency, the RSS per connection of
# every data plane, the control plane's RSS and its CPU seconds while connecting and publishing.
#
#   tools/bench/scale.sh 100000          (SCALE_DATAPLANES=6 SCALE_CHANNELS=100 SCALE_RATE=20
#                                         SCALE_DURATION=20 SCALE_CONNECT_RATE=4000)
# Runs in a network namespace of its own with only loopback (as compare.sh), so the sources'
# ephemeral ports are all free. Every command line it runs is echoed to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/bench/cluster.sh
bench_netns "$@"
CONNECTIONS=${1:?usage: tools/bench/scale.sh CONNECTIONS}
DATAPLANES=${SCALE_DATAPLANES:-6}
CHANNELS=${SCALE_CHANNELS:-100}
RATE=${SCALE_RATE:-20}
DURATION=${SCALE_DURATION:-20}
CONNECT_RATE=${SCALE_CONNECT_RATE:-4000}
BIN=${RELAY_BIN_DIR:-build/bin}
WORK=$(mktemp -d)
start_cluster "$DATAPLANES"
idle_rss=()
for p in "${dp_pids[@]}"; do idle_rss+=("$(rss_kib "$p")"); done

# Subscribers: one process per data plane, the connections split evenly (the first ones take
# the remainder).
cp_cpu0=$(cpu_ticks "$cp_pid")
sub_pids=() counts=()
for k in $(seq 1 "$DATAPLANES"); do
  n=$((CONNECTIONS / DATAPLANES + (k <= CONNECTIONS % DATAPLANES ? 1 : 0)))
  counts+=("$n")
  args=(subscribe --port "${dp_ports[k - 1]}" --connections "$n" --channels "$CHANNELS"
        --connect-rate $((CONNECT_RATE / DATAPLANES > 0 ? CONNECT_RATE / DATAPLANES : 1))
        --duration 600 --sources "127.0.0.$((k + 1))" --ready-file "$WORK/ready$k" --json)
  say "$BIN/relay-bench ${args[*]}"
  "$BIN/relay-bench" "${args[@]}" >"$WORK/sub$k.json" 2>"$WORK/sub$k.err" &
  sub_pids+=($!)
  pids+=($!)
done
connect_start=$(date +%s.%N)
deadline=$((SECONDS + CONNECTIONS / CONNECT_RATE + 120))
for k in $(seq 1 "$DATAPLANES"); do
  until [[ -s $WORK/ready$k ]]; do
    ((SECONDS < deadline)) || { echo "subscribers not ready in time" >&2; exit 1; }
    sleep 0.2
  done
done
connect_secs=$(awk -v a="$connect_start" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b - a}')
cp_cpu1=$(cpu_ticks "$cp_pid")
held_rss=()
for p in "${dp_pids[@]}"; do held_rss+=("$(rss_kib "$p")"); done

# Publish, let the tail arrive (5 s: the latency of a late delivery is in the percentiles), and
# collect what every subscriber process counted.
pub_args=(publish --http-port "$cp_http" --channels "$CHANNELS" --rate "$RATE" --duration "$DURATION"
          --publishers 8 --json)
say "$BIN/relay-bench ${pub_args[*]}"
"$BIN/relay-bench" "${pub_args[@]}" >"$WORK/pub.json"
sleep 5
cp_cpu2=$(cpu_ticks "$cp_pid")
cp_rss=$(rss_kib "$cp_pid")
for p in "${sub_pids[@]}"; do kill -INT "$p"; done
for p in "${sub_pids[@]}"; do wait "$p" || true; done

node - "$WORK" "$CONNECTIONS" "$DATAPLANES" "$CHANNELS" "$connect_secs" \
  "$((cp_cpu1 - cp_cpu0))" "$((cp_cpu2 - cp_cpu1))" "$(getconf CLK_TCK)" "$cp_rss" \
  "${counts[*]}" "${idle_rss[*]}" "${held_rss[*]}" <<'EOF'
const fs = require('fs');
const [work, conns, dps, channels, connectSecs, cpuConnect, cpuPublish, tck, cpRss, counts, idle, held] =
  process.argv.slice(2);
const n = counts.split(' ').map(Number);
const idleRss = idle.split(' ').map(Number);
const heldRss = held.split(' ').map(Number);
const C = Number(channels);
const pub = JSON.parse(fs.readFileSync(`${work}/pub.json`, 'utf8'));
const subs = n.map((_, k) => JSON.parse(fs.readFileSync(`${work}/sub${k + 1}.json`, 'utf8')));
// Subscribers of channel c in a process of m connections, and publishes to c out of P.
const share = (m, c) => Math.floor(m / C) + (c < m % C ? 1 : 0);
let expected = 0;
for (const m of n) for (let c = 0; c < C; c++) expected += share(m, c) * share(pub.published, c);
const got = subs.reduce((a, s) => a + s.deliveries, 0);
const max = (k) => Math.max(...subs.map((s) => s[k]));
const out = {
  connections: Number(conns), dataplanes: Number(dps), channels: C,
  subscribed: subs.reduce((a, s) => a + s.subscribed, 0),
  connected: subs.reduce((a, s) => a + s.connected, 0),
  failed: subs.reduce((a, s) => a + s.failed, 0),
  fail_reasons: subs.map((s) => s.fail_reasons),
  disconnected: subs.reduce((a, s) => a + s.disconnected, 0),
  connect_seconds: Number(connectSecs),
  publish_rate: pub.achieved_publish_rate, published: pub.published, publish_errors: pub.publish_errors,
  expected_deliveries: expected, deliveries: got, delivery_ratio: expected ? got / expected : 0,
  deliveries_per_second: got / (pub.published / pub.achieved_publish_rate),
  latency_p50_ms: max('latency_p50_ms'), latency_p99_ms: max('latency_p99_ms'), latency_max_ms: max('latency_max_ms'),
  dataplane_rss_kib: heldRss,
  dataplane_bytes_per_connection: heldRss.map((r, k) => Math.round((r - idleRss[k]) * 1024 / Math.max(1, subs[k].subscribed))),
  controlplane_rss_kib: Number(cpRss),
  controlplane_cpu_seconds_connecting: Number(cpuConnect) / Number(tck),
  controlplane_cpu_seconds_publishing: Number(cpuPublish) / Number(tck),
};
console.log(JSON.stringify(out));
EOF
