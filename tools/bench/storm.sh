#!/usr/bin/env bash
# A reconnect storm (docs/benchmarks.md, issue #16): one relay-controlplane and STORM_DATAPLANES
# relay-dataplane processes on loopback. STORM_CLIENTS Pusher-protocol clients (relay-bench
# `storm`, half of them in presence channels with stable user ids) are on the first data plane;
# STORM_STEADY subscribers (relay-bench `subscribe`) are on the others, and a publisher sends
# STORM_RATE publishes/s to the steady subscribers' channels through the control plane's HTTP API
# for STORM_PUBLISH_SECONDS, across the storm. Then the first data plane goes away:
#   kill  SIGKILL: the clients see their connections close and reconnect (pusher-js: after 1 s)
#   cut   a network cut (iptables DROP of the data plane's client port, both ways, in this run's
#         own network namespace): nothing tells the clients, they find out by pusher-js's
#         activity check (the server's --activity-timeout STORM_ACTIVITY, then a pusher:ping
#         unanswered for STORM_PONG s); the data plane, still attached to the control plane,
#         ends its silent sessions by its own ping/pong timeout meanwhile
# and the clients reconnect to the other data planes (spread as a load balancer would).
# Prints one JSON line: time from the kill or cut until every client is subscribed again, connect
# and subscribe p50/p99 of the reconnections, the control plane's CPU seconds in the storm,
# the steady subscribers' deliveries against what was published (ratio 1.000: nothing lost for
# the clients that stayed connected), every presence roster read back through relayctl against
# the clients subscribed (read once every client is back and, for the cut, once the cut data plane
# has ended its stale sessions too), and the timeline of subscribed clients (every 100 ms).
#
#   tools/bench/storm.sh kill|cut     (STORM_CLIENTS=19900 STORM_DATAPLANES=4 STORM_STEADY=3000
#                                      STORM_CHANNELS=200 STORM_RATE=50 STORM_ACTIVITY=20
#                                      STORM_PONG=5 STORM_PROCS=2 STORM_CAPACITY=19950)
# Runs in a network namespace of its own with only loopback (as scale.sh); the cut needs it.
# Every command line it runs is echoed to stderr.
set -euo pipefail
cd "$(dirname "$0")/../.."
. tools/bench/cluster.sh
bench_netns "$@"
MODE=${1:?usage: tools/bench/storm.sh kill|cut}
[[ $MODE == kill || $MODE == cut ]] || { echo "usage: tools/bench/storm.sh kill|cut" >&2; exit 2; }
# The cut's iptables rules must land in this run's own network namespace (gone with it, and
# holding nothing but loopback), never in the machine's.
if [[ $MODE == cut && ( -z ${RELAY_BENCH_NETNS:-} || $(ip -o link show | grep -vc ': lo:') -ne 0 ) ]]; then
  echo "storm.sh cut needs a network namespace of its own (unshare -n)" >&2
  exit 2
fi
CLIENTS=${STORM_CLIENTS:-19900}
DATAPLANES=${STORM_DATAPLANES:-4}
STEADY=${STORM_STEADY:-3000}
CHANNELS=${STORM_CHANNELS:-200}
RATE=${STORM_RATE:-50}
ACTIVITY=${STORM_ACTIVITY:-20}
PONG=${STORM_PONG:-5}
PROCS=${STORM_PROCS:-2}
CAPACITY=${STORM_CAPACITY:-19950}
((DATAPLANES >= 2)) || { echo "storm.sh: STORM_DATAPLANES must be at least 2" >&2; exit 2; }
PUBLISH_SECONDS=${STORM_PUBLISH_SECONDS:-$([[ $MODE == cut ]] && echo 60 || echo 20)}
BIN=${RELAY_BIN_DIR:-build/bin}
WORK=$(mktemp -d)
wait_files() { # wait_files SECONDS FILE...: until every file has content
  local deadline=$((SECONDS + $1)) f
  shift
  for f in "$@"; do
    until [[ -s $f ]]; do
      ((SECONDS < deadline)) || { echo "storm: $f not written in time" >&2; return 1; }
      sleep 0.1
    done
  done
}
now_ms() { date +%s%3N; }

# The capacity a data plane takes by default leaves 10% of the open-file limit (20,000 here) for
# gRPC, HTTP and files; the clients of this run need nearly all of it on the first data plane.
start_cluster "$DATAPLANES" --activity-timeout "$ACTIVITY" --capacity "$CAPACITY"
victim_pid=${dp_pids[0]} victim_port=${dp_ports[0]}
survivors=("${dp_ports[@]:1}")
reconnect=$(IFS=,; echo "${survivors[*]}")

# The steady subscribers, one process per surviving data plane, and the storm's clients.
sub_pids=() counts=()
for k in $(seq 1 "${#survivors[@]}"); do
  n=$((STEADY / ${#survivors[@]} + (k <= STEADY % ${#survivors[@]} ? 1 : 0)))
  counts+=("$n")
  args=(subscribe --port "${survivors[k - 1]}" --connections "$n" --channels 10 --duration 600
        --connect-rate 2000 --sources "127.0.0.$((k + 1))" --ready-file "$WORK/ready-sub$k" --json)
  say "$BIN/relay-bench ${args[*]}"
  "$BIN/relay-bench" "${args[@]}" >"$WORK/sub$k.json" 2>"$WORK/sub$k.err" &
  sub_pids+=($!)
  pids+=($!)
done
storm_pids=() storm_counts=() ready=() done_files=()
for k in $(seq 1 "$PROCS"); do
  n=$((CLIENTS / PROCS + (k <= CLIENTS % PROCS ? 1 : 0)))
  storm_counts+=("$n")
  args=(storm --port "$victim_port" --reconnect-ports "$reconnect" --connections "$n"
        --channels "$CHANNELS" --user-prefix "s$k-" --pong-timeout "$PONG" --connect-rate 2000
        --storm-timeout 300 --duration 600 --sources "127.0.0.$((k + 20))"
        --ready-file "$WORK/ready-storm$k" --done-file "$WORK/done$k" --json)
  say "$BIN/relay-bench ${args[*]}"
  "$BIN/relay-bench" "${args[@]}" >"$WORK/storm$k.json" 2>"$WORK/storm$k.err" &
  storm_pids+=($!)
  pids+=($!)
  ready+=("$WORK/ready-storm$k")
  done_files+=("$WORK/done$k")
done
for k in $(seq 1 "${#survivors[@]}"); do ready+=("$WORK/ready-sub$k"); done
wait_files $((CLIENTS / 1000 + 120)) "${ready[@]}"

# Publish across the storm; the storm starts 2 s in.
pub_args=(publish --http-port "$cp_http" --channels 10 --rate "$RATE" --duration "$PUBLISH_SECONDS"
          --publishers 4 --json)
say "$BIN/relay-bench ${pub_args[*]}"
"$BIN/relay-bench" "${pub_args[@]}" >"$WORK/pub.json" &
pub_pid=$!
pids+=("$pub_pid")
sleep 2
# The kernel's count of connections the listen queues could not take (this namespace only).
listen_overflows() { nstat -az TcpExtListenOverflows 2>/dev/null | awk '/TcpExtListenOverflows/{print $2}' || echo 0; }
overflows0=$(listen_overflows)
cp_cpu0=$(cpu_ticks "$cp_pid")
event_ms=$(now_ms)
if [[ $MODE == kill ]]; then
  say "kill -KILL $victim_pid (dp1)"
  kill -KILL "$victim_pid"
else
  say "iptables: drop every packet to or from port $victim_port (dp1's clients)"
  iptables -I INPUT -p tcp --dport "$victim_port" -j DROP
  iptables -I INPUT -p tcp --sport "$victim_port" -j DROP
fi
# relay-bench storm gives the clients 300 s from the first loss, which a cut delays by up to
# the activity check.
wait_files $((300 + ACTIVITY + PONG + 60)) "${done_files[@]}"
back_ms=$(now_ms)
cp_cpu1=$(cpu_ticks "$cp_pid")
overflows1=$(listen_overflows)
# The cut data plane ends its silent sessions by its own ping/pong timeout (--activity-timeout,
# then 30 s): the rosters are read after that too, where a stale session's end could take a
# member away that is back on another data plane.
if [[ $MODE == cut ]]; then
  deadline=$((SECONDS + ACTIVITY + 30 + 60))
  while :; do
    left=$("$BIN/relayctl" --server "127.0.0.1:$cp_grpc" --data-dir "$WORK/cp" --json nodes list |
      node -e 'const r=JSON.parse(require("fs").readFileSync(0,"utf8"));
        const n=(r.nodes||[]).find((x)=>(x.nodeId||x.node_id)==="dp1");
        console.log(n ? Number((n.load||{}).connections||0) : 0)') || left=unknown
    [[ $left == 0 ]] && break
    ((SECONDS < deadline)) || { echo "storm: dp1 still holds $left sessions" >&2; break; }
    sleep 0.5
  done
  stale_gone_ms=$(now_ms)
fi
mkdir "$WORK/rosters"
for c in $(seq 0 $((CHANNELS - 1))); do
  "$BIN/relayctl" --server "127.0.0.1:$cp_grpc" --data-dir "$WORK/cp" --json \
    users --app app-id "presence-storm-$c" >"$WORK/rosters/$c.json" || echo '{"error":true}' >"$WORK/rosters/$c.json"
done
wait "$pub_pid" || true
sleep 3
for p in "${sub_pids[@]}" "${storm_pids[@]}"; do kill -INT "$p" 2>/dev/null || true; done
for p in "${sub_pids[@]}" "${storm_pids[@]}"; do wait "$p" || true; done

node - "$WORK" "$MODE" "$CLIENTS" "$DATAPLANES" "$CHANNELS" "$event_ms" "$back_ms" \
  "${stale_gone_ms:-0}" "$((cp_cpu1 - cp_cpu0))" "$(getconf CLK_TCK)" "${counts[*]}" \
  "${storm_counts[*]}" "$((${overflows1:-0} - ${overflows0:-0}))" <<'EOF'
const fs = require('fs');
const [work, mode, clients, dps, channels, eventMs, backMs, staleGoneMs, cpuTicks, tck, counts,
  stormCounts, overflows] = process.argv.slice(2);
const C = Number(channels);
const read = (f) => JSON.parse(fs.readFileSync(`${work}/${f}`, 'utf8'));
const pub = read('pub.json');
const subs = counts.split(' ').map((_, k) => read(`sub${k + 1}.json`));
const storms = stormCounts.split(' ').map((_, k) => read(`storm${k + 1}.json`));
// Steady subscribers: client i of a process on bench-<i % 10>, publish j on bench-<j % 10>.
const share = (m, c, of) => Math.floor(m / of) + (c < m % of ? 1 : 0);
let expected = 0;
for (const s of subs) for (let c = 0; c < 10; c++) expected += share(s.connections, c, 10) * share(pub.published, c, 10);
const got = subs.reduce((a, s) => a + s.deliveries, 0);
// Presence rosters: storm process k's even clients i are user s<k>-<i> on presence-storm-<i/2 % C>.
const want = new Map();
stormCounts.split(' ').map(Number).forEach((n, k) => {
  for (let i = 0; i < n; i += 2) {
    const ch = `presence-storm-${Math.floor(i / 2) % C}`;
    if (!want.has(ch)) want.set(ch, new Set());
    want.get(ch).add(`s${k + 1}-${i}`);
  }
});
let missing = 0, extra = 0, members = 0, unreadable = 0;
for (let c = 0; c < C; c++) {
  const r = JSON.parse(fs.readFileSync(`${work}/rosters/${c}.json`, 'utf8'));
  if (r.error) { unreadable++; continue; }
  const ids = new Set((r.users || []).map((u) => u.userId ?? u.user_id));
  const w = want.get(`presence-storm-${c}`) || new Set();
  members += ids.size;
  for (const id of w) if (!ids.has(id)) missing++;
  for (const id of ids) if (!w.has(id)) extra++;
}
// One timeline: each process's samples shifted to the event; per 100 ms, the sum of every
// process's last sample (before its first one, all of its clients were subscribed).
const series = storms.map((s, k) => ({
  n: Number(stormCounts.split(' ')[k]),
  pts: s.timeline_ms_subscribed_attempts.map(([t, live]) => [t + s.first_loss_unix_ms - Number(eventMs), live]),
}));
const end = Math.max(...series.map((s) => (s.pts.length ? s.pts[s.pts.length - 1][0] : 0)));
const timeline = [];
for (let t = 0; t <= end + 100; t += 100) {
  let live = 0;
  for (const s of series) {
    let v = s.n;
    for (const [pt, l] of s.pts) { if (pt > t) break; v = l; }
    live += v;
  }
  timeline.push([t, live]);
}
const max = (k) => Math.max(...storms.map((s) => s[k]));
const sum = (k) => storms.reduce((a, s) => a + s[k], 0);
const out = {
  mode, clients: Number(clients), dataplanes: Number(dps), presence_channels: C,
  presence_clients: [...want.values()].reduce((a, s) => a + s.size, 0),
  lost: sum('lost'), resubscribed: sum('resubscribed'), subscribed_at_end: sum('subscribed_at_end'),
  complete: storms.every((s) => s.complete === 'yes'),
  seconds_until_all_back: (Number(backMs) - Number(eventMs)) / 1000,
  seconds_first_loss_to_all_back: max('storm_seconds'),
  reconnect_attempts: sum('reconnect_attempts'), abandoned_attempts: sum('abandoned_attempts'),
  connect_p50_ms: max('connect_p50_ms'), connect_p99_ms: max('connect_p99_ms'),
  subscribe_p50_ms: max('subscribe_p50_ms'), subscribe_p99_ms: max('subscribe_p99_ms'),
  controlplane_cpu_seconds_storm: Number(cpuTicks) / Number(tck),
  listen_queue_overflows: Number(overflows),
  stale_sessions_ended_seconds: Number(staleGoneMs) ? (Number(staleGoneMs) - Number(eventMs)) / 1000 : null,
  steady_subscribers: subs.reduce((a, s) => a + s.subscribed, 0),
  steady_disconnected: subs.reduce((a, s) => a + s.disconnected, 0),
  published: pub.published, publish_errors: pub.publish_errors,
  steady_expected_deliveries: expected, steady_deliveries: got,
  steady_delivery_ratio: expected ? got / expected : 0,
  roster_members: members, roster_missing: missing, roster_extra: extra, rosters_unreadable: unreadable,
  timeline_100ms_subscribed: timeline,
};
console.log(JSON.stringify(out));
EOF
