// Webhooks on etcd through the real binaries: relay-controlplane with --etcd-endpoints keeps the
// webhook endpoints and the outbox in etcd, so another relay-controlplane on the same prefix (a
// new leader, with its own data dir) delivers what the first one, SIGKILLed, had not.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');
const etcd = require('./lib/etcd');

after(async () => { await h.stopAll(); await etcd.stopAll(); });

test('a second control plane on the same etcd prefix delivers the outbox of a SIGKILLed one', async () => {
  const cluster = await etcd.startCluster(1);
  const flags = ['--etcd-endpoints', cluster.endpointsFlag, '--etcd-prefix', '/conformance-webhooks'];
  const first = await h.startSplit(flags);
  const rx = await h.webhookReceiver(Infinity);  // the receiver is down for now
  const add = await h.relayctl(first, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url, '--events', 'cache_miss']);
  assert.strictEqual(add.code, 0, add.stderr);
  const c = h.client(first);
  try {
    // cache_miss is only emitted at subscribe time: a delivery by the second control plane can
    // only come from the outbox in etcd.
    for (const name of ['cache-a', 'cache-b', 'cache-c']) await h.once(c.subscribe(name), 'pusher:cache_miss');
    await h.waitFor(() => rx.requests >= 1, 10000, 'a first (refused) attempt');
    assert.strictEqual(rx.events.length, 0);
    await h.stopControlPlane(first, 'SIGKILL');

    // The new leader: its own ports and data dir, the same etcd prefix.
    const dataDir = h.tempDir();
    const { ports: [httpPort, grpcPort] } = await h.startOnFreePorts('relay-controlplane', 2,
      ([p, g]) => ['--port', p, '--grpc-port', g, '--data-dir', dataDir, ...flags], 'controlplane ready');
    const second = { httpPort, grpcPort, dataDir };
    const list = await h.relayctl(second, ['webhooks', 'list', '--app', 'app-id', '--json']);
    assert.strictEqual(list.code, 0, list.stderr);
    const hooks = JSON.parse(list.stdout).webhooks;
    assert.strictEqual(hooks.length, 1);
    assert.strictEqual(hooks[0].url, rx.url);
    rx.failLeft = 0;  // the receiver is back
    const want = ['cache_miss:cache-a', 'cache_miss:cache-b', 'cache_miss:cache-c'];
    await h.waitFor(() => want.every((w) => rx.names().includes(w)), 20000, 'delivery by the second control plane');
    assert.deepStrictEqual(rx.names(), want, 'each once, in order');
    assert.strictEqual(rx.invalid, 0);
  } finally { c.disconnect(); rx.close(); }
});

test('bad --etcd-endpoints and --etcd-prefix are usage errors (exit 2)', async () => {
  const { execFile } = require('node:child_process');
  const path = require('node:path');
  const run = (args) => new Promise((resolve) => {
    execFile(path.join(h.BIN, 'relay-controlplane'), ['--data-dir', h.tempDir(), ...args], { timeout: 10000 },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stderr }));
  });
  const noPort = await run(['--etcd-endpoints', 'localhost']);
  assert.strictEqual(noPort.code, 2, noPort.stderr);
  assert.match(noPort.stderr, /--etcd-endpoints/);
  const prefix = await run(['--etcd-endpoints', '127.0.0.1:2379', '--etcd-prefix', 'relay']);
  assert.strictEqual(prefix.code, 2, prefix.stderr);
  assert.match(prefix.stderr, /--etcd-prefix/);
});
