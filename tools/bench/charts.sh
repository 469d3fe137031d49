#!/usr/bin/env bash
# Draws the figures of docs/benchmarks.md from committed raw results, with Debian's gnuplot
# (scripts/install-deps.sh installs gnuplot-nox): SVG files next to the raw results, so a reader
# can check a chart against its numbers and anyone can redraw it.
#
#   tools/bench/charts.sh                  (every chart below)
#
# Scale curve (tools/bench/scale.sh, one JSON line per point): docs/img/scale-memory.svg (data
# planes' and control plane's memory against connections) and docs/img/scale-latency.svg
# (p50/p99 delivery latency and control plane CPU against connections).
# Reconnect storm (tools/bench/storm.sh, one JSON line per mode): docs/img/storm-timeline.svg
# (clients subscribed against seconds since the data plane was killed or cut off).
# Latency against load (tools/bench/compare.sh fan-out lines, several rates, several targets):
# docs/img/latency-load.svg (p99 against the deliveries/s each server achieved as the offered rate
# rose, one line per server: where a line turns back, the server was saturated).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v gnuplot >/dev/null || { echo "charts.sh: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
command -v node >/dev/null || { echo "charts.sh: node is missing" >&2; exit 1; }
mkdir -p docs/img
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

scale=${SCALE_RESULTS:-docs/bench-results-2026-12-03-scale.jsonl}
# One row per point: connections, data planes' RSS (MiB, summed), control plane RSS (MiB), bytes
# per connection (mean over data planes), p50, p99 (ms), control plane CPU seconds (connecting,
# publishing), deliveries/s.
node -e '
const lines = require("fs").readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean);
const rows = lines.map((l) => JSON.parse(l)).sort((a, b) => a.connections - b.connections);
for (const r of rows) {
  const dp = r.dataplane_rss_kib.reduce((a, b) => a + b, 0) / 1024;
  const bpc = r.dataplane_bytes_per_connection.reduce((a, b) => a + b, 0) / r.dataplane_bytes_per_connection.length;
  console.log([r.connections, dp.toFixed(1), (r.controlplane_rss_kib / 1024).toFixed(1), bpc.toFixed(0),
    r.latency_p50_ms, r.latency_p99_ms, r.controlplane_cpu_seconds_connecting, r.controlplane_cpu_seconds_publishing,
    Math.round(r.deliveries_per_second)].join(" "));
}' "$scale" >"$work/scale.dat"

gnuplot <<EOF
set terminal svg size 720,420 dynamic font "sans,12" background "white"
set datafile separator " "
set grid
set key top left
set logscale x 10
set xlabel "concurrent connections (6 data planes, one control plane)"
set format x "%.0s%c"

set output "docs/img/scale-memory.svg"
set title "Memory against connections (tools/bench/scale.sh)"
set ylabel "RSS, MiB"
set y2label "bytes per connection (data plane)"
set y2tics
set ytics nomirror
plot "$work/scale.dat" using 1:2 with linespoints lw 2 title "data planes, summed", \
     "$work/scale.dat" using 1:3 with linespoints lw 2 title "control plane", \
     "$work/scale.dat" using 1:4 axes x1y2 with linespoints lw 2 dt 2 title "bytes per connection (right)"

set output "docs/img/scale-latency.svg"
set title "Delivery latency and control plane CPU against connections"
set ylabel "latency, ms"
set y2label "control plane CPU, s"
plot "$work/scale.dat" using 1:5 with linespoints lw 2 title "p50", \
     "$work/scale.dat" using 1:6 with linespoints lw 2 title "p99 (worst subscriber process)", \
     "$work/scale.dat" using 1:7 axes x1y2 with linespoints lw 2 dt 2 title "CPU while connecting (right)", \
     "$work/scale.dat" using 1:8 axes x1y2 with linespoints lw 2 dt 3 title "CPU while publishing (right)"
EOF
echo "charts.sh: wrote docs/img/scale-memory.svg docs/img/scale-latency.svg from $scale"

storm=${STORM_RESULTS:-docs/bench-results-2026-12-03-storm.jsonl}
# One file per mode: seconds since the event, clients subscribed.
node -e '
const fs = require("fs");
for (const l of fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean)) {
  const r = JSON.parse(l);
  fs.writeFileSync(`${process.argv[2]}/storm-${r.mode}.dat`,
    r.timeline_100ms_subscribed.map(([t, n]) => `${t / 1000} ${n}`).join("\n") + "\n");
}' "$storm" "$work"
gnuplot <<EOF
set terminal svg size 720,420 dynamic font "sans,12" background "white"
set grid
set key bottom right
set output "docs/img/storm-timeline.svg"
set title "Reconnect storm: a data plane holding 19,900 clients goes away (tools/bench/storm.sh)"
set xlabel "seconds since the data plane was killed or cut off"
set ylabel "clients subscribed"
set yrange [0:*]
plot "$work/storm-kill.dat" using 1:2 with lines lw 2 title "SIGKILL (clients see the close)", \
     "$work/storm-cut.dat" using 1:2 with lines lw 2 title "network cut (clients find out by ping)"
EOF
echo "charts.sh: wrote docs/img/storm-timeline.svg from $storm"

load=${LOAD_RESULTS:-docs/bench-results-2026-12-03-load.jsonl}
# One file per target, in the order of the offered rate: deliveries/s achieved, p99 (ms).
node -e '
const fs = require("fs");
const by = {};
for (const l of fs.readFileSync(process.argv[1], "utf8").split("\n").filter(Boolean)) {
  const { target, result: r } = JSON.parse(l);
  if (!r || r.scenario !== "fanout") continue;
  (by[target] = by[target] || []).push([r.target_publish_rate, r.deliveries_per_second, r.latency_p99_ms]);
}
for (const [t, rows] of Object.entries(by)) {
  rows.sort((a, b) => a[0] - b[0]);
  fs.writeFileSync(`${process.argv[2]}/load-${t}.dat`, rows.map((r) => r.slice(1).join(" ")).join("\n") + "\n");
}' "$load" "$work"
gnuplot <<EOF
set terminal svg size 720,420 dynamic font "sans,12" background "white"
set grid
set key top left
set logscale y 10
set output "docs/img/latency-load.svg"
set title "p99 delivery latency as the offered load rises (2,000 subscribers, 20 channels)"
set xlabel "deliveries per second achieved (offered: 250 to 3,000 publishes/s x 100 subscribers)"
set ylabel "p99 latency, ms (log)"
set format x "%.0s%c"
plot "$work/load-relay.dat" using 1:2 with linespoints lw 2 title "Relay", \
     "$work/load-soketi.dat" using 1:2 with linespoints lw 2 title "soketi"
EOF
echo "charts.sh: wrote docs/img/latency-load.svg from $load"
