// The control plane's store on etcd (--etcd-endpoints, docs/scaling.md "Store on etcd"): two
// relay-controlplane processes on one etcd prefix share apps and credentials (an app made through
// the first works through the second, started after the first stopped), --import-sqlite moves an
// SQLite store into etcd, and bad flags or an unreachable etcd end the process with a clear message.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const { execFile } = require('node:child_process');
const PusherServer = require('pusher');
const Pusher = require('pusher-js');
const h = require('./lib/harness');
const etcd = require('./lib/etcd');

after(async () => { await h.stopAll(); await etcd.stopAll(); });

// A relay-controlplane on `prefix` of `cluster` with its own data dir; returns what relayctl and
// addDataPlane take.
async function startStoreControlPlane(cluster, prefix, extra = []) {
  const dataDir = h.tempDir();
  let cpArgs;
  const { ports: [httpPort, grpcPort], proc: cp } = await h.startOnFreePorts('relay-controlplane', 2, ([p, g]) => {
    cpArgs = ['--port', p, '--grpc-port', g, '--data-dir', dataDir, '--etcd-endpoints', cluster.endpointsFlag,
      '--etcd-prefix', prefix, ...extra].map(String);
    return cpArgs;
  }, 'controlplane ready');
  return { httpPort, grpcPort, dataDir, cp, cpArgs, dps: [] };
}

function run(args, timeout = 30000) {
  return new Promise((resolve) => {
    execFile(path.join(h.BIN, 'relay-controlplane'), args, { timeout },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, signal: err ? err.signal : null, stdout, stderr }));
  });
}

async function appJson(server, args) {
  const r = await h.relayctl(server, [...args, '--json']);
  assert.strictEqual(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
}

// A pusher-js client of `app` on `node` that signs private channels with the app's secret (as
// the app's auth endpoint would), and the pusher SDK for the same app on `api`'s HTTP port.
function clientFor(node, app) {
  const signer = new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1',
    port: String(node.httpPort), useTLS: false });
  const c = new Pusher(app.key, {
    wsHost: '127.0.0.1', wsPort: node.wsPort, forceTLS: false, enabledTransports: ['ws'], cluster: 'mt1',
    disableStats: true,
    channelAuthorization: { customHandler: (p, cb) => cb(null, signer.authorizeChannel(p.socketId, p.channelName)) },
  });
  return c;
}
function sdkFor(server, app) {
  return new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1',
    port: String(server.httpPort), useTLS: false });
}

// Subscribes to a private channel of `app` through `node` and triggers on it through `api`.
async function roundTrip(node, api, app, channel) {
  const c = clientFor(node, app);
  try {
    const ch = c.subscribe(channel);
    await h.once(ch, 'pusher:subscription_succeeded');  // the secret verified on this node
    const got = h.once(ch, 'hello');
    const res = await sdkFor(api, app).trigger(channel, 'hello', { n: 1 });
    assert.strictEqual(res.status, 200);
    assert.deepStrictEqual((await got).data, { n: 1 });
  } finally { c.disconnect(); }
}

test('two control planes on one etcd prefix, one after the other: an app made through the first works through the second', { timeout: 120000 }, async () => {
  const cluster = await etcd.startCluster(1);
  const first = await startStoreControlPlane(cluster, '/conformance-a');
  const app = await appJson(first, ['apps', 'create', '--name', 'shared']);
  await appJson(first, ['apps', 'update', app.id, '--plan', 'pro']);
  const gone = new Promise((resolve) => first.cp.child.once('exit', resolve));
  first.cp.child.kill('SIGTERM');
  await gone;

  // The second has its own data dir: the app, its secret and its plan come from etcd.
  const second = await startStoreControlPlane(cluster, '/conformance-a');
  const node = await h.addDataPlane(second, 'n1');
  await roundTrip(node, second, app, 'private-shared');
  const shown = await appJson(second, ['apps', 'show', app.id]);
  assert.strictEqual(shown.plan, 'pro');
  // The first made the default app; the second found it there and made no other.
  const apps = await appJson(second, ['apps', 'list']);
  assert.deepStrictEqual(apps.apps.map((a) => a.id).sort(), ['app-id', app.id].sort());
  // Disabled through the second: its clients and API calls are refused.
  await appJson(second, ['apps', 'disable', app.id]);
  const refused = await sdkFor(second, app).trigger('private-shared', 'x', {}).then((res) => res.status, (e) => e.status);
  assert.strictEqual(refused, 403);
});

test('--import-sqlite moves an SQLite store into etcd once; a client authenticates with its app; its webhooks come along', { timeout: 120000 }, async (t) => {
  const cluster = await etcd.startCluster(1);
  // An SQLite control plane with an app, then stopped.
  const old = await h.startSplit();
  const app = await appJson(old, ['apps', 'create', '--name', 'legacy']);
  await roundTrip(old, old, app, 'private-before');
  // A webhook endpoint whose receiver is down: one cache_miss waits in the SQLite outbox.
  const rx = await h.webhookReceiver(Infinity);
  t.after(() => rx.close());
  const add = await h.relayctl(old, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url, '--events', 'cache_miss']);
  assert.strictEqual(add.code, 0, add.stderr);
  const c = h.client(old);
  await h.once(c.subscribe('cache-imported'), 'pusher:cache_miss');
  await h.waitFor(() => rx.requests >= 1, 10000, 'a first (refused) delivery attempt');
  c.disconnect();
  await h.stopControlPlane(old, 'SIGTERM');
  const db = path.join(old.dataDir, 'relay.db');

  const imported = await run(['--etcd-endpoints', cluster.endpointsFlag, '--etcd-prefix', '/moved', '--import-sqlite', db]);
  assert.strictEqual(imported.code, 0, imported.stderr);
  assert.match(imported.stdout, /imported .* into etcd prefix \/moved: 2 app\(s\)/);
  assert.match(imported.stdout, /1 webhook endpoint\(s\) with 1 undelivered event\(s\)/);
  // Again: the same data is there, nothing to do.
  const again = await run(['--etcd-endpoints', cluster.endpointsFlag, '--etcd-prefix', '/moved', '--import-sqlite', db]);
  assert.strictEqual(again.code, 0, again.stderr);
  assert.match(again.stdout, /already holds/);

  const cp = await startStoreControlPlane(cluster, '/moved');
  const node = await h.addDataPlane(cp, 'n1');
  await roundTrip(node, cp, app, 'private-moved');
  // The endpoint came along, and the event the SQLite control plane had not delivered is
  // delivered by the one on etcd once the receiver is back.
  rx.failLeft = 0;
  await h.waitFor(() => rx.names().includes('cache_miss:cache-imported'), 20000, 'the imported event delivered');
  assert.deepStrictEqual(rx.names(), ['cache_miss:cache-imported']);
  // A prefix with other apps refuses the import.
  await appJson(cp, ['apps', 'create', '--name', 'newer']);
  const refused = await run(['--etcd-endpoints', cluster.endpointsFlag, '--etcd-prefix', '/moved', '--import-sqlite', db]);
  assert.strictEqual(refused.code, 1);
  assert.match(refused.stderr, /refusing to import/);
});

test('bad etcd flags exit 2; an unreachable etcd ends the start with a clear error', { timeout: 60000 }, async () => {
  const bad = await run(['--etcd-endpoints', 'no-port-here']);
  assert.strictEqual(bad.code, 2);
  assert.match(bad.stderr, /--etcd-endpoints: .*HOST:PORT/i);
  const port = await run(['--etcd-endpoints', '127.0.0.1:twenty']);
  assert.strictEqual(port.code, 2);
  assert.match(port.stderr, /--etcd-endpoints: .*expected host:port/);
  const prefix = await run(['--etcd-endpoints', '127.0.0.1:2379', '--etcd-prefix', 'relay']);
  assert.strictEqual(prefix.code, 2);
  assert.match(prefix.stderr, /--etcd-prefix must start with '\/'/);
  const lonely = await run(['--import-sqlite', '/nonexistent/relay.db']);
  assert.strictEqual(lonely.code, 2);
  assert.match(lonely.stderr, /--import-sqlite needs --etcd-endpoints/);

  // Nothing listens there: the start gives up after its bound, without a crash.
  const nobody = await h.freePort();
  const down = await run(['--port', String(await h.freePort()), '--grpc-port', String(await h.freePort()),
    '--data-dir', h.tempDir(), '--etcd-endpoints', `127.0.0.1:${nobody}`], 45000);
  assert.strictEqual(down.code, 1, down.stderr);
  assert.match(down.stderr, /cannot open the app store on etcd/);
  assert.strictEqual(down.signal, null);
});
