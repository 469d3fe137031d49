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

// Set by scripts/sanitize.sh when the binaries are the ASan + UBSan build.
const SANITIZED = Boolean(process.env.RELAY_SANITIZED);

// An RSS growth bound of `mb` MiB as bytes. Under ASan the allocator's redzones and shadow
// memory roughly double what an allocation costs (sanitize.sh also shrinks ASan's quarantine so
// freed memory is reused), so the bound doubles there; an unbounded attack still exceeds it many
// times over.
function rssBound(mb) {
  return (SANITIZED ? 2 : 1) * mb * 1024 * 1024;
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

module.exports = { SANITIZED, rssBytes, rssBound, assertAlive, assertServes };
