// Control plane state across restarts (apps, rotated secrets, tokens, daily quotas), per-app event
// rate, and batch triggers with `info`.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');
const PusherServer = require('pusher');

after(h.stopAll);

const sdkFor = (server, app, secret) => new PusherServer({ appId: app.id, key: app.key,
  secret: secret || app.secret, host: '127.0.0.1', port: String(server.httpPort), useTLS: false });

test('apps, secrets, tokens and the daily quota survive a control plane restart', async () => {
  const server = await h.startSplit();
  const ctl = (args) => h.relayctl(server, args);
  const app = JSON.parse((await ctl(['apps', 'create', '--name', 'kept', '--json'])).stdout);
  await ctl(['apps', 'update', app.id, '--max-daily-messages', '3', '--name', 'renamed']);
  const token = JSON.parse((await ctl(['tokens', 'create', '--app', app.id, '--json'])).stdout).secret;
  const rotated = JSON.parse((await ctl(['apps', 'rotate-secret', app.id, '--overlap', '1h', '--json'])).stdout);
  const s = sdkFor(server, app, rotated.secret);
  for (let i = 0; i < 3; i++) assert.strictEqual((await s.trigger('c', 'e', {})).status, 200);
  await assert.rejects(s.trigger('c', 'e', {}), (e) => e.status === 429);
  // A graceful stop flushes the day's usage (a crash may lose its last second, see docs).
  await h.restartControlPlane(server, 'SIGTERM');
  const shown = JSON.parse((await ctl(['apps', 'show', app.id, '--json'])).stdout);
  assert.strictEqual(shown.name, 'renamed');
  assert.strictEqual(Number(shown.limits.max_daily_messages), 3);
  await assert.rejects(sdkFor(server, app, rotated.secret).trigger('c', 'e', {}), (e) => e.status === 429);
  // Both secrets still verify within the overlap, and the token too (quota aside: raise it).
  await ctl(['apps', 'update', app.id, '--max-daily-messages', '100']);
  assert.strictEqual((await sdkFor(server, app, app.secret).trigger('c', 'e', {})).status, 200);
  const r = await fetch(`http://127.0.0.1:${server.httpPort}/apps/${app.id}/events`, { method: 'POST',
    headers: { Authorization: `Bearer ${token}` }, body: JSON.stringify({ name: 'e', channel: 'c', data: '1' }) });
  assert.strictEqual(r.status, 200);
});

test('per-app backend event rate answers 429', async () => {
  const server = await h.startRelay(['--trigger-rate-limit', '0']);
  await h.relayctl(server, ['apps', 'update', 'app-id', '--max-backend-events-per-second', '2']);
  const s = h.sdk(server);
  let limited = false;
  for (let i = 0; i < 10 && !limited; i++) {
    limited = await s.trigger('c', 'e', {}).then(() => false, (e) => e.status === 429);
  }
  assert.ok(limited);
});

test('batch triggers with info answer per item', async () => {
  const server = await h.startRelay();
  const c = h.client(server, h.authOptions(server, () => ({ user_id: 'x' })));
  try {
    const ch = c.subscribe('presence-b');
    await h.once(ch, 'pusher:subscription_succeeded');
    const res = await h.sdk(server).triggerBatch([
      { channel: 'presence-b', name: 'a', data: '1', info: 'user_count,subscription_count' },
      { channel: 'plain', name: 'b', data: '2' }]);
    assert.deepStrictEqual(await res.json(), { batch: [{ user_count: 1, subscription_count: 1 }, {}] });
    const tooMany = Array.from({ length: 11 }, (_, i) => ({ channel: 'c', name: 'e', data: String(i) }));
    const raw = await h.sdk(server).post({ path: '/batch_events', body: { batch: tooMany } }).catch((e) => e);
    assert.strictEqual(raw.status, 400);
  } finally { c.disconnect(); }
});
