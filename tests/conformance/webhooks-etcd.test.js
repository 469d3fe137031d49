// Webhooks on etcd through the real binaries: relay-controlplane with --etcd-endpoints keeps the
// webhook endpoints and the outbox in etcd, so another replica on the same prefix, elected when
// the leader is SIGKILLed (with its own data dir), delivers what the first one had not.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const { execFile } = require('node:child_process');
const http = require('node:http');
const path = require('node:path');
const h = require('./lib/harness');
const etcd = require('./lib/etcd');

after(async () => { await h.stopAll(); await etcd.stopAll(); });

// GET /ready's status (0 when it does not answer).
function ready(port) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ready', timeout: 1000 }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', () => resolve(0));
  });
}

// The keys under `prefix` in etcd, read with etcdctl (Debian's etcd-client).
function etcdKeys(cluster, prefix) {
  return new Promise((resolve) => {
    execFile('etcdctl', ['--endpoints', cluster.endpointsFlag, 'get', '--prefix', '--keys-only', prefix],
      { env: { ...process.env, ETCDCTL_API: '3' }, timeout: 5000 },
      (err, stdout) => resolve(err ? [] : stdout.split('\n').filter((l) => l.length > 0)));
  });
}

test('a second control plane on the same etcd prefix delivers the outbox of a SIGKILLed one', async () => {
  const cluster = await etcd.startCluster(1);
  const flags = ['--etcd-endpoints', cluster.endpointsFlag, '--etcd-prefix', '/conformance-webhooks'];
  const first = await h.startSplit(flags);
  // Alone on the prefix, it is elected: /ready once its data plane is attached.
  await h.waitFor(async () => (await ready(first.httpPort)) === 200, 15000, 'the first control plane leads');
  const rx = await h.webhookReceiver(Infinity);  // the receiver is down for now
  const add = await h.relayctl(first, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url, '--events', 'cache_miss']);
  assert.strictEqual(add.code, 0, add.stderr);
  const c = h.client(first);
  try {
    // cache_miss is only emitted at subscribe time: a delivery by the second control plane can
    // only come from the outbox in etcd.
    for (const name of ['cache-a', 'cache-b', 'cache-c']) await h.once(c.subscribe(name), 'pusher:cache_miss');
    await h.waitFor(() => rx.requests >= 1, 10000, 'a first (refused) attempt');
    // All three are in etcd's outbox (a SIGKILL loses what was not yet stored).
    let stored = [];
    await h.waitFor(async () => (stored = await etcdKeys(cluster, '/conformance-webhooks/v1/outbox/')).length === 3,
      10000, 'the three events stored in etcd');
    assert.ok(stored.every((k) => /^\/conformance-webhooks\/v1\/outbox\/wh_[0-9a-f]+\/\d{20}$/.test(k)), stored.join(' '));
    assert.strictEqual(rx.events.length, 0);
    await h.stopControlPlane(first, 'SIGKILL');

    // The new leader: its own ports and data dir, the same etcd prefix.
    const dataDir = h.tempDir();
    const { ports: [httpPort, grpcPort] } = await h.startOnFreePorts('relay-controlplane', 2,
      ([p, g]) => ['--port', p, '--grpc-port', g, '--data-dir', dataDir, ...flags], 'controlplane ready');
    const second = { httpPort, grpcPort, dataDir };
    // Elected once the killed leader's lease (2 s) has expired: the admin API answers then.
    let list;
    await h.waitFor(async () => (list = await h.relayctl(second, ['webhooks', 'list', '--app', 'app-id', '--json'])).code === 0,
      15000, 'the second control plane leads');
    const hooks = JSON.parse(list.stdout).webhooks;
    assert.strictEqual(hooks.length, 1);
    assert.strictEqual(hooks[0].url, rx.url);
    rx.failLeft = 0;  // the receiver is back
    const want = ['cache_miss:cache-a', 'cache_miss:cache-b', 'cache_miss:cache-c'];
    await h.waitFor(() => want.every((w) => rx.names().includes(w)), 20000, 'delivery by the second control plane');
    assert.deepStrictEqual(rx.names(), want, 'each once, in order');
    assert.strictEqual(rx.invalid, 0);
    await h.waitFor(async () => (await etcdKeys(cluster, '/conformance-webhooks/v1/outbox/')).length === 0,
      10000, 'delivered events leave etcd');
  } finally { c.disconnect(); rx.close(); }
});

test('bad --etcd-endpoints and --etcd-prefix are usage errors (exit 2)', async () => {
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
