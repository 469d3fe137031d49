#!/usr/bin/env bash
# Smoke run of relay-bench against a fresh relay (seconds): checks the tool still works end to
# end and that every scenario reports deliveries (on Relay, and on the physical reference
# relay-reference for the scenarios it implements), without asserting any speed.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(tools/bench/compare.sh quick)
echo "$out"
node -e '
const lines = require("fs").readFileSync(0, "utf8").trim().split("\n").map(JSON.parse);
const want = [["relay", "connect"], ["relay", "fanout"], ["relay", "presence"],
              ["relay", "client-events"], ["reference", "connect"], ["reference", "fanout"]];
for (const [t, w] of want) {
  const r = lines.find((l) => l.target === t && l.result && l.result.scenario === w);
  if (!r) { console.error("bench smoke: no result for " + t + " " + w); process.exit(1); }
  const x = r.result;
  const ok = w === "connect" ? x.established > 0 && x.failed === 0
           : w === "presence" ? x.members_joined > 0 && x.not_joined === 0
           : x.deliveries > 0 && x.delivery_ratio === 1;
  if (!ok) { console.error("bench smoke: bad " + w + " result " + JSON.stringify(x)); process.exit(1); }
}
console.log("bench smoke: " + lines.length + " passed, 0 failed");
' <<<"$out"
# The multi-process scale run (tools/bench/scale.sh) at a tiny size: 3 data planes, every
# publish delivered to every subscriber of every process.
scale=$(SCALE_DATAPLANES=3 SCALE_CHANNELS=10 SCALE_DURATION=1 tools/bench/scale.sh 300 2>/dev/null)
echo "$scale"
node -e '
const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
const ok = r.subscribed === 300 && r.failed === 0 && r.published > 0 && r.deliveries > 0 &&
  r.delivery_ratio === 1 && r.dataplane_rss_kib.length === 3;
if (!ok) { console.error("bench smoke: bad scale result"); process.exit(1); }
console.log("bench smoke: scale run passed");
' <<<"$scale"
# The reconnect storm (tools/bench/storm.sh) at a tiny size: a data plane with 400 clients (half
# in presence channels) killed; every client subscribed again on the others, every roster exact,
# the subscribers elsewhere missing nothing published meanwhile.
storm_log=$(mktemp)
storm=$(STORM_CLIENTS=400 STORM_STEADY=90 STORM_CHANNELS=10 STORM_RATE=20 STORM_PUBLISH_SECONDS=6 \
  tools/bench/storm.sh kill 2>"$storm_log") || {
  echo "bench smoke: storm.sh failed; its log:"
  tail -n 40 "$storm_log"
  exit 1
}
rm -f "$storm_log"
echo "${storm:0:600}"
node -e '
const r = JSON.parse(require("fs").readFileSync(0, "utf8"));
const ok = r.complete && r.lost === 400 && r.resubscribed === 400 && r.roster_members === 200 &&
  r.roster_missing === 0 && r.roster_extra === 0 && r.rosters_unreadable === 0 &&
  r.published > 0 && r.steady_delivery_ratio === 1 && r.timeline_100ms_subscribed.length > 0;
if (!ok) { console.error("bench smoke: bad storm result"); process.exit(1); }
console.log("bench smoke: storm run passed");
' <<<"$storm"
