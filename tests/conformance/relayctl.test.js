// relayctl against real servers, each command checked through another path (the pusher SDK,
// pusher-js, or the HTTP API).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');
const PusherServer = require('pusher');

let server;
before(async () => { server = await h.startRelay(); });
after(h.stopAll);

const ctl = (args) => h.relayctl(server, args);
const json = async (args) => {
  const r = await ctl([...args, '--json']);
  assert.strictEqual(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
};
const sdkFor = (app, secret) => new PusherServer({ appId: app.id, key: app.key, secret: secret || app.secret,
  host: '127.0.0.1', port: String(server.httpPort), useTLS: false });

test('apps: create, list, show, update, disable/enable, delete', async () => {
  const app = await json(['apps', 'create', '--name', 'shop']);
  assert.ok(app.id && app.key && app.secret.length >= 16);
  assert.strictEqual((await sdkFor(app).trigger('c', 'e', {})).status, 200);
  const list = await json(['apps', 'list']);
  assert.ok(list.apps.some((a) => a.id === app.id));
  const byKey = await json(['apps', 'show', app.key]);
  assert.strictEqual(byKey.id, app.id);
  const upd = await json(['apps', 'update', app.id, '--max-connections', '5', '--client-events', 'true', '--plan', 'pro']);
  assert.strictEqual(upd.limits.max_connections, 5);
  assert.strictEqual(upd.features.client_events, true);
  assert.strictEqual(upd.plan, 'pro');
  // Disabling: HTTP API 403 and open connections closed with 4003.
  const c = h.client({ wsPort: server.wsPort }, {});
  const c2 = new (require('pusher-js'))(app.key, { wsHost: '127.0.0.1', wsPort: server.wsPort, forceTLS: false,
    enabledTransports: ['ws'], cluster: 'mt1', disableStats: true });
  try {
    await h.once(c2.connection, 'connected');
    const closed = new Promise((resolve) => c2.connection.bind('error', (e) => resolve(e)));
    assert.strictEqual((await ctl(['apps', 'disable', app.id])).code, 0);
    const err = await closed;
    assert.strictEqual(err.data.code, 4003);
    await assert.rejects(sdkFor(app).trigger('c', 'e', {}), (e) => e.status === 403);
    assert.strictEqual((await ctl(['apps', 'enable', app.id])).code, 0);
    assert.strictEqual((await sdkFor(app).trigger('c', 'e', {})).status, 200);
  } finally { c.disconnect(); c2.disconnect(); }
  // Delete needs confirmation unless --yes; then the app is gone (404).
  const refused = await ctl(['apps', 'delete', app.id]);
  assert.strictEqual(refused.code, 2);
  assert.strictEqual((await ctl(['apps', 'delete', app.id, '--yes'])).code, 0);
  await assert.rejects(sdkFor(app).trigger('c', 'e', {}), (e) => e.status === 404);
  assert.strictEqual((await ctl(['apps', 'show', app.id])).code, 5);
});

test('apps rotate-secret: the old secret works during the overlap only', async () => {
  const app = await json(['apps', 'create', '--name', 'rotating']);
  const rotated = await json(['apps', 'rotate-secret', app.id, '--overlap', '2s']);
  assert.notStrictEqual(rotated.secret, app.secret);
  assert.strictEqual((await sdkFor(app, rotated.secret).trigger('c', 'e', {})).status, 200);
  assert.strictEqual((await sdkFor(app, app.secret).trigger('c', 'e', {})).status, 200);
  // After the overlap the old secret is refused (polled, bounded).
  let refused = false;
  const t0 = Date.now();
  while (!refused && Date.now() - t0 < 10000) {
    refused = await sdkFor(app, app.secret).trigger('c', 'e', {}).then(() => false, (e) => e.status === 401);
    if (!refused) await new Promise((r) => setTimeout(r, 250));
  }
  assert.ok(refused, 'the previous secret still verified after its overlap');
  assert.strictEqual((await sdkFor(app, rotated.secret).trigger('c', 'e', {})).status, 200);
});

test('tokens: create, use as bearer, list, revoke', async () => {
  const created = await json(['tokens', 'create', '--app', 'app-id', '--name', 'ci', '--expires-in', '1h']);
  const token = created.secret;
  const call = () => fetch(`http://127.0.0.1:${server.httpPort}/api/v1/apps/app-id/events`, {
    method: 'POST', headers: { Authorization: `Bearer ${token}` },
    body: JSON.stringify({ name: 'e', channel: 'c', data: '{}' }) });
  assert.strictEqual((await call()).status, 200);
  const list = await json(['tokens', 'list', '--app', 'app-id']);
  const t = list.tokens.find((x) => x.id === created.token.id);
  assert.ok(t && Number(t.last_used_unix_ms) > 0);
  assert.ok(!JSON.stringify(list).includes(token), 'token text must not be listed');
  assert.strictEqual((await ctl(['tokens', 'revoke', created.token.id])).code, 0);
  assert.strictEqual((await call()).status, 401);
});

test('traffic: publish, channels, channel, users, send-to-user, terminate', async () => {
  const a = h.client(server, h.authOptions(server, () => ({ user_id: 'ada', id: 'ada' })));
  try {
    const ch = a.subscribe('presence-ops');
    await h.once(ch, 'pusher:subscription_succeeded');
    const got = h.once(ch, 'news');
    assert.strictEqual((await ctl(['publish', '--app', 'app-id', '--channel', 'presence-ops', '--event', 'news', '--data', '{"n":1}'])).code, 0);
    assert.deepStrictEqual((await got).data, { n: 1 });
    const chans = await json(['channels', '--app', 'app-id', '--prefix', 'presence-']);
    assert.strictEqual(chans.channels.find((c) => c.name === 'presence-ops').subscription_count, 1);
    const one = await json(['channel', '--app', 'app-id', 'presence-ops']);
    assert.strictEqual(one.user_count, 1);
    const users = await json(['users', '--app', 'app-id', 'presence-ops']);
    assert.deepStrictEqual(users.users.map((u) => u.user_id), ['ada']);
    a.signin();
    await a.user.signinDonePromise;
    let note = null;
    a.user.bind('ping', (d) => { note = d; });
    for (let i = 0; i < 50 && note === null; i++) {
      await ctl(['send-to-user', '--app', 'app-id', '--user', 'ada', '--event', 'ping', '--data', '{"x":2}']);
      await h.waitFor(() => note !== null, 200).catch(() => {});
    }
    assert.deepStrictEqual(note, { x: 2 });
    const gone = new Promise((resolve) => a.connection.bind('error', resolve));
    assert.strictEqual((await ctl(['terminate', '--app', 'app-id', '--user', 'ada'])).code, 0);
    assert.strictEqual((await gone).data.code, 4009);
  } finally { a.disconnect(); }
});

test('nodes list, stats, and nodes drain (clients closed with 4200)', async () => {
  const own = await h.startRelay();
  const run = (args) => h.relayctl(own, args);
  const nodes = JSON.parse((await run(['nodes', 'list', '--json'])).stdout);
  assert.strictEqual(nodes.nodes.length, 1);
  const c = h.client(own);
  try {
    await h.once(c.connection, 'connected');
    await h.waitFor(() => true, 10);
    const stats = JSON.parse((await run(['stats', '--json'])).stdout);
    assert.strictEqual(Number(stats.nodes), 1);
    const closed = new Promise((resolve) => c.connection.bind('error', resolve));
    assert.strictEqual((await run(['nodes', 'drain', nodes.nodes[0].node_id, '--window', '1s'])).code, 0);
    assert.strictEqual((await closed).data.code, 4200);
    assert.strictEqual((await run(['nodes', 'drain', 'no-such-node'])).code, 5);
  } finally { c.disconnect(); }
});

test('errors: one line on stderr and documented exit codes', async () => {
  const port = await h.freePort();
  const unreachable = await h.relayctl({ grpcPort: port, dataDir: server.dataDir }, ['apps', 'list']);
  assert.strictEqual(unreachable.code, 3);
  assert.match(unreachable.stderr, /cannot reach the control plane/);
  const badToken = await ctl(['apps', 'list', '--admin-token', 'nope']);
  assert.strictEqual(badToken.code, 4);
  assert.strictEqual((await ctl(['apps', 'show', 'missing-app'])).code, 5);
  assert.strictEqual((await ctl(['apps', 'frobnicate'])).code, 2);
  assert.strictEqual((await ctl(['publish', '--app', 'app-id'])).code, 2);
  assert.strictEqual((await ctl(['apps', 'create', '--name', 'x', '--id', 'bad id!'])).code, 6);
  const help = await ctl(['--help']);
  assert.strictEqual(help.code, 0);
  assert.match(help.stdout, /Exit codes/);
});

test('relayctl against relay-controlplane (split shape)', async () => {
  const split = await h.startSplit();
  const app = JSON.parse((await h.relayctl(split, ['apps', 'create', '--name', 'split-app', '--json'])).stdout);
  const s = new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port: String(split.httpPort), useTLS: false });
  assert.strictEqual((await s.trigger('c', 'e', {})).status, 200);
  const nodes = JSON.parse((await h.relayctl(split, ['nodes', 'list', '--json'])).stdout);
  assert.strictEqual(nodes.nodes[0].node_id, 'n1');
});

test('TLS: relay serves gRPC over TLS, relayctl --ca talks to it, plaintext is refused', async () => {
  const { execFileSync } = require('node:child_process');
  const fs = require('node:fs');
  const os = require('node:os');
  const path = require('node:path');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-tls-'));
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1',
    '-addext', 'subjectAltName=IP:127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' });
  const tls = await h.startRelay(['--grpc-tls-cert', cert, '--grpc-tls-key', key]);
  // The embedded data plane attached over TLS: a client gets events.
  const c = h.client(tls);
  try {
    const ch = c.subscribe('secure');
    await h.once(ch, 'pusher:subscription_succeeded');
    const got = h.once(ch, 'e');
    const r = await h.relayctl(tls, ['--ca', cert, 'publish', '--app', 'app-id', '--channel', 'secure', '--event', 'e', '--data', '1']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual((await got).data, 1);
    const plain = await h.relayctl(tls, ['apps', 'list']);
    assert.strictEqual(plain.code, 3);
  } finally { c.disconnect(); }
});

test('stats --watch prints rates until interrupted', async () => {
  const { spawn } = require('node:child_process');
  const path = require('node:path');
  const bin = path.join(process.env.RELAY_BIN_DIR || path.resolve(__dirname, '../../build/bin'), 'relayctl');
  const p = spawn(bin, ['--server', `127.0.0.1:${server.grpcPort}`, '--data-dir', server.dataDir, 'stats', '--watch', '--interval', '1s']);
  let out = '';
  p.stdout.on('data', (d) => { out += d; });
  try {
    await h.waitFor(() => (out.match(/CONNECTIONS/g) || []).length >= 2, 10000, 'two stats tables');
    assert.match(out, /\d+\/s/);
  } finally { p.kill('SIGINT'); }
});
