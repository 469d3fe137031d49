#!/usr/bin/env node
// Turns the JSON lines of tools/bench/compare.sh into the Markdown table of docs/benchmarks.md:
// one row per scenario, the headline figure of each target, and Relay's ratio to soketi.
//
//   node tools/bench/summary.js < results.jsonl
'use strict';
const lines = require('fs').readFileSync(0, 'utf8').split('\n').filter((l) => l.trim().startsWith('{'));
const runs = lines.map((l) => JSON.parse(l));

const fmt = (v, digits = 0) => (v === undefined ? '-' : Number(v).toLocaleString('en-US', { maximumFractionDigits: digits }));
// The figures that matter for each scenario, and which way is better.
function headline(r) {
  switch (r.scenario) {
    case 'connect':
      return { value: r.connections_per_second, better: 'higher', text:
        `${fmt(r.connections_per_second)}/s, p50 ${fmt(r.connect_p50_ms, 1)} / p99 ${fmt(r.connect_p99_ms, 1)} ms` +
        (r.server_bytes_per_connection !== undefined ? `, ${fmt(r.server_bytes_per_connection)} B/conn` : '') };
    case 'fanout':
    case 'client-events':
      return { value: r.deliveries_per_second, better: 'higher', text:
        `${fmt(r.deliveries_per_second)}/s (ratio ${fmt(r.delivery_ratio, 3)}` +
        (r.achieved_publish_rate !== undefined ? `, ${fmt(r.achieved_publish_rate)} pub/s` : '') +
        (r.disconnected ? `, ${r.disconnected} cut` : '') +
        `), p50 ${fmt(r.latency_p50_ms, 1)} / p99 ${fmt(r.latency_p99_ms, 1)} ms`,
        p99: r.latency_p99_ms };
    case 'presence':
      return { value: r.joins_per_second, better: 'higher', text:
        `${fmt(r.joins_per_second)} joins/s, p99 ${fmt(r.connect_p99_ms, 1)} ms` };
    default:
      return { value: undefined, text: JSON.stringify(r) };
  }
}

const byArgs = new Map();
for (const run of runs) {
  if (!byArgs.has(run.args)) byArgs.set(run.args, {});
  byArgs.get(run.args)[run.target] = run.result;
}
console.log('| Scenario (relay-bench arguments) | Relay | soketi | Relay / soketi | Relay split |');
console.log('| --- | --- | --- | --- | --- |');
for (const [args, t] of byArgs) {
  const cell = (r) => (r ? headline(r).text : '-');
  let ratio = '-';
  if (t.relay && t.soketi) {
    const a = headline(t.relay), b = headline(t.soketi);
    if (a.value && b.value) ratio = `${fmt(a.value / b.value, 2)}×`;
    if (a.p99 && b.p99) {
      ratio += b.p99 >= a.p99 ? `, p99 ${fmt(b.p99 / a.p99, 1)}× lower` : `, p99 ${fmt(a.p99 / b.p99, 1)}× higher`;
    }
  }
  console.log(`| \`${args}\` | ${cell(t.relay)} | ${cell(t.soketi)} | ${ratio} | ${cell(t.split)} |`);
}
