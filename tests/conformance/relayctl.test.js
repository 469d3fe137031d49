// relayctl against real servers, each command checked through another path (the pusher SDK,
// pusher-js, or the HTTP API).
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');
const http = require('node:http');
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

// The traps of #15, each through the real relayctl against a real relay.

test('rotate-secret --overlap 0: the old secret stops verifying at once, and relayctl says so', async () => {
  const app = await json(['apps', 'create', '--name', 'no-overlap']);
  const r = await ctl(['apps', 'rotate-secret', app.id, '--overlap', '0']);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.match(r.stdout, /Previous secrets of .* no longer verify/);
  assert.doesNotMatch(r.stdout, /verifies for|verifies until/);
  const secret = /New secret: (\S+)/.exec(r.stdout)[1];
  // An HTTP request signed with the old secret is refused right away; the new one works.
  await assert.rejects(sdkFor(app, app.secret).trigger('c', 'e', {}), (e) => e.status === 401);
  assert.strictEqual((await sdkFor(app, secret).trigger('c', 'e', {})).status, 200);
  // Without --overlap the server keeps the old one for an hour, and relayctl prints that.
  const hour = await ctl(['apps', 'rotate-secret', app.id]);
  assert.match(hour.stdout, /verifies until .* \(about 3[56]\d\d more seconds\)/);
  assert.strictEqual((await sdkFor(app, secret).trigger('c', 'e', {})).status, 200);
});

test('a command flag is never read from the environment; global flags are', async () => {
  const app = await json(['apps', 'create', '--name', 'envless', '--plan', 'pro']);
  const r = await new Promise((resolve) => require('node:child_process').execFile(
    require('node:path').join(process.env.RELAY_BIN_DIR || require('node:path').resolve(__dirname, '../../../build/bin'), 'relayctl'),
    ['apps', 'update', app.id, '--name', 'renamed', '--json'],
    // The global flags from the environment (server and data dir), command flags too (ignored).
    { env: { ...process.env, RELAY_SERVER: `127.0.0.1:${server.grpcPort}`, RELAY_DATA_DIR: server.dataDir,
      RELAY_PLAN: 'free', RELAY_MAX_CONNECTIONS: '1', RELAY_SHOW_SECRET: 'true' } },
    (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr })));
  assert.strictEqual(r.code, 0, r.stderr);
  const updated = JSON.parse(r.stdout);
  assert.strictEqual(updated.name, 'renamed');
  assert.strictEqual(updated.plan, 'pro');
  assert.strictEqual(updated.limits.max_connections, app.limits.max_connections);
  const help = await ctl(['apps', 'update', '--help']);
  assert.doesNotMatch(help.stdout, /RELAY_PLAN/);
  assert.match(help.stdout, /RELAY_SERVER/);
});

test('nodes drain on relay keeps the HTTP API and /health; nodes undrain accepts clients again', async () => {
  const own = await h.startRelay();
  const run = (args) => h.relayctl(own, args);
  const c = h.client(own);
  try {
    await h.once(c.connection, 'connected');
    const closed = new Promise((resolve) => c.connection.bind('error', resolve));
    assert.strictEqual((await run(['nodes', 'drain', 'embedded', '--window', '1s'])).code, 0);
    assert.strictEqual((await closed).data.code, 4200);
    c.disconnect();
    assert.strictEqual((await fetch(`http://127.0.0.1:${own.httpPort}/health`)).status, 200);
    assert.strictEqual((await h.sdk(own).trigger('c', 'e', {})).status, 200);
    const listed = JSON.parse((await run(['nodes', 'list', '--json'])).stdout);
    assert.strictEqual(listed.nodes[0].draining, true);
    // A new client's WebSocket handshake is refused with 503 while draining...
    const refused = await new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port: own.wsPort, path: `/app/${h.APP.key}?protocol=7`,
        headers: { Connection: 'Upgrade', Upgrade: 'websocket', 'Sec-WebSocket-Version': '13',
          'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==' } });
      req.on('upgrade', (res, socket) => { socket.destroy(); resolve(101); });
      req.on('response', (res) => { res.resume(); resolve(res.statusCode); });
      req.on('error', reject);
      req.end();
    });
    assert.strictEqual(refused, 503);
    // ...and accepted after the undrain.
    assert.strictEqual((await run(['nodes', 'undrain', 'embedded'])).code, 0);
    const back = h.client(own);
    await h.once(back.connection, 'connected');
    back.disconnect();
    const after = JSON.parse((await run(['nodes', 'list', '--json'])).stdout);
    assert.ok(!after.nodes[0].draining);
    assert.strictEqual((await run(['nodes', 'undrain', 'no-such-node'])).code, 5);
  } finally { c.disconnect(); }
});

test('exit codes: a disabled app is "refused by policy" (7), not "bad admin credential" (4)', async () => {
  const app = await json(['apps', 'create', '--name', 'refused']);
  assert.strictEqual((await ctl(['apps', 'disable', app.id])).code, 0);
  const r = await ctl(['publish', '--app', app.id, '--channel', 'c', '--event', 'e', '--data', '{}']);
  assert.strictEqual(r.code, 7, r.stderr);
  assert.strictEqual((await ctl(['apps', 'list', '--admin-token', 'nope'])).code, 4);
  const help = await ctl(['--help']);
  assert.match(help.stdout, /7 +refused by policy/);
});

test('secrets are shown at creation or with --show-secret only', async () => {
  const app = await json(['apps', 'create', '--name', 'secretive']);
  assert.ok(app.secret);
  const shown = await json(['apps', 'show', app.id]);
  assert.strictEqual(shown.secret, undefined);
  assert.ok(!JSON.stringify(await json(['apps', 'list'])).includes(app.secret));
  const text = await ctl(['apps', 'show', app.id]);
  assert.ok(!text.stdout.includes(app.secret));
  assert.strictEqual((await json(['apps', 'show', app.id, '--show-secret'])).secret, app.secret);
  const updated = await json(['apps', 'update', app.id, '--plan', 'x']);
  assert.strictEqual(updated.secret, undefined);
  // rotate-secret shows the new secret (created there), never the previous one.
  const rotated = await json(['apps', 'rotate-secret', app.id, '--overlap', '1h']);
  assert.ok(rotated.secret && rotated.secret !== app.secret);
  assert.ok(!JSON.stringify(rotated).includes(app.secret));
});

test('--app everywhere: webhooks test --app APP (the positional form still works, deprecated)', async () => {
  const app = await json(['apps', 'create', '--name', 'hooks']);
  const byFlag = await ctl(['webhooks', 'test', '--app', app.id, '--json']);
  assert.strictEqual(byFlag.code, 0, byFlag.stderr);
  const old = await ctl(['webhooks', 'test', app.id, '--json']);
  assert.strictEqual(old.code, 0, old.stderr);
  assert.match(old.stderr, /deprecated; use 'webhooks test --app APP'/);
  // The apps commands take --app too.
  assert.strictEqual((await json(['apps', 'show', '--app', app.id])).id, app.id);
  assert.strictEqual((await ctl(['apps', 'show', '--app', app.id, 'other'])).code, 2);
});

test('--json prints numbers as JSON numbers', async () => {
  const app = await json(['apps', 'update', 'app-id', '--max-daily-messages', '5000000000']);
  assert.strictEqual(app.limits.max_daily_messages, 5000000000);
  assert.strictEqual(typeof app.revision, 'number');
  const stats = await json(['stats']);
  assert.strictEqual(typeof stats.nodes, 'number');
  assert.strictEqual(typeof stats.unix_ms, 'number');
  const token = await json(['tokens', 'create', '--app', 'app-id', '--expires-in', '1h']);
  assert.strictEqual(typeof token.token.expires_unix_ms, 'number');
  assert.strictEqual(typeof token.token.created_unix_ms, 'number');
  const nodes = await json(['nodes', 'list']);
  assert.strictEqual(typeof nodes.nodes[0].attached_unix_ms, 'number');
});
