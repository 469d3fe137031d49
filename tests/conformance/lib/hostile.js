// Helpers for the hostile-input suites (tests/conformance/hostile-*.test.js): how big a server
// process has grown, and whether it still serves a normal pusher-js client end to end.
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const h = require('./harness');

// Resident set size of a process in bytes (Linux /proc), or NaN when it is gone.
function rssBytes(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) * 1024 : NaN;
  } catch (e) {
    return NaN;
  }
}

// Asserts that `proc` (a handle from harness.start: { child }) is still running.
function assertAlive(proc, what = 'server') {
  assert.strictEqual(proc.child.exitCode, null, `${what} exited with ${proc.child.exitCode}`);
  assert.strictEqual(proc.child.signalCode, null, `${what} died of ${proc.child.signalCode}`);
}

// A fresh pusher-js client subscribes to a public channel on `server` and receives an event
// triggered with the pusher SDK: the server still does its job after an attack.
let probes = 0;
async function assertServes(server) {
  const c = h.client(server);
  try {
    const channel = `hostile-probe-${process.pid}-${++probes}`;
    const ch = c.subscribe(channel);
    await h.once(ch, 'pusher:subscription_succeeded');
    const got = h.once(ch, 'probe');
    await h.sdk(server).trigger(channel, 'probe', { n: probes });
    const { data } = await got;
    assert.deepStrictEqual(data, { n: probes });
  } finally {
    c.disconnect();
  }
}

module.exports = { rssBytes, assertAlive, assertServes };
