// The HTTP API endpoint by endpoint and error by error, through the real binaries: both path
// styles with the app id or key as {app}, each authentication method and each way it fails, the
// validation rules of issue #4, `info` on triggers, channel queries across data planes, the
// server-side /auth signer, the limits with their headers, and state across a SIGKILL.
// Each error asserts the status, the JSON body's `code` and the gist of its `error`.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');
const { signed } = require('./lib/signed');
const PusherServer = require('pusher');
const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

let server;  // relay without the per-address limit, shared by the tests that do not need limits
before(async () => { server = await h.startRelay(['--trigger-rate-limit', '0']); });
after(h.stopAll);

const keySecret = { 'X-Relay-Key': h.APP.key, 'X-Relay-Secret': h.APP.secret };
const url = (s, p) => `http://127.0.0.1:${s.httpPort}${p}`;
const post = (s, p, body, headers = keySecret) =>
  fetch(url(s, p), { method: 'POST', headers, body: typeof body === 'string' ? body : JSON.stringify(body) });
const get = (s, p, headers = keySecret) => fetch(url(s, p), { headers });
const ctlJson = async (s, args) => {
  const r = await h.relayctl(s, [...args, '--json']);
  assert.strictEqual(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
};

// Asserts an error answer: status, JSON content type, {"error": matching gist, "code": status}.
async function expectError(pending, status, gist) {
  const r = await pending;
  const text = await r.text();
  assert.strictEqual(r.status, status, `expected ${status}, got ${r.status}: ${text}`);
  assert.match(r.headers.get('content-type') || '', /application\/json/);
  const body = JSON.parse(text);
  assert.strictEqual(body.code, status);
  assert.match(body.error, gist);
  return r;
}
async function expectOk(pending, expected) {
  const r = await pending;
  const text = await r.text();
  assert.strictEqual(r.status, 200, text);
  if (expected !== undefined) assert.deepStrictEqual(JSON.parse(text), expected);
  return r;
}
// The pusher SDK talking to `prefix` (e.g. /api/v1/apps/app-key) instead of /apps/{appId}.
function sdkAt(s, prefix, secret = h.APP.secret) {
  const c = new PusherServer({ appId: h.APP.id, key: h.APP.key, secret, host: '127.0.0.1',
    port: String(s.httpPort), useTLS: false });
  c.config.prefixPath = (p) => prefix + p;
  return c;
}
// Calls `fn` until `pred` holds for its result or `timeoutMs` passes; returns the last result.
async function until(fn, pred, timeoutMs = 10000) {
  const t0 = Date.now();
  for (;;) {
    const v = await fn();
    if (pred(v) || Date.now() - t0 > timeoutMs) return v;
    await new Promise((r) => setTimeout(r, 20));  // poll interval
  }
}
const sdkError = (promise) => promise.then(() => assert.fail('expected the SDK call to fail'), (e) => e);

test('the pusher SDK (HMAC) on /apps/{id}, /apps/{key}, /api/v1/apps/{id} and /api/v1/apps/{key}', async () => {
  const c = h.client(server);
  try {
    const ch = c.subscribe('paths');
    await h.once(ch, 'pusher:subscription_succeeded');
    for (const prefix of ['/apps/app-id', '/apps/app-key', '/api/v1/apps/app-id', '/api/v1/apps/app-key']) {
      const s = sdkAt(server, prefix);
      const got = h.once(ch, 'via');
      assert.strictEqual((await s.trigger('paths', 'via', { prefix })).status, 200);
      assert.deepStrictEqual((await got).data, { prefix });
      const list = await (await s.get({ path: '/channels', params: { filter_by_prefix: 'pat', info: 'subscription_count' } })).json();
      assert.deepStrictEqual(list, { channels: { paths: { subscription_count: 1 } } });
      const one = await (await s.get({ path: '/channels/paths', params: { info: 'subscription_count' } })).json();
      assert.deepStrictEqual(one, { occupied: true, subscription_count: 1 });
    }
  } finally { c.disconnect(); }
});

test('HMAC: bad signature, wrong secret, old or future timestamp, wrong or missing body_md5, wrong auth_key, tampered query: 401', async () => {
  const p = server.httpPort;
  const body = { name: 'e', channel: 'c', data: '1' };
  const now = Math.floor(Date.now() / 1000);
  await expectOk(signed(p, 'POST', '/apps/app-id/events', { body }), {});
  await expectOk(signed(p, 'POST', '/api/v1/apps/app-key/events', { body }), {});
  await expectOk(signed(p, 'POST', '/apps/app-id/events', { body, timestamp: now - 580 }), {});
  await expectError(signed(p, 'POST', '/apps/app-id/events', { body, signature: 'ab'.repeat(32) }), 401, /Invalid signature/);
  await expectError(signed(p, 'POST', '/apps/app-id/events', { body, secret: 'not-the-secret' }), 401, /Invalid signature/);
  await expectError(signed(p, 'POST', '/apps/app-id/events', { body, timestamp: now - 700 }), 401, /Timestamp expired.*600s/);
  await expectError(signed(p, 'POST', '/apps/app-id/events', { body, timestamp: now + 700 }), 401, /Timestamp expired/);
  await expectError(signed(p, 'POST', '/apps/app-id/events', { body, timestamp: 'yesterday' }), 401, /auth_timestamp/);
  await expectError(signed(p, 'POST', '/apps/app-id/events', { body, bodyMd5: '0'.repeat(32) }), 401, /body_md5/);
  await expectError(signed(p, 'POST', '/apps/app-id/events', { body, bodyMd5: null }), 401, /body_md5/);
  await expectError(signed(p, 'POST', '/apps/app-id/events', { body, key: 'other-key' }), 401, /auth_key/);
  // Signed over one query, sent with another: the signature no longer matches.
  await expectError(signed(p, 'GET', '/apps/app-id/channels', { query: { filter_by_prefix: 'a' },
    tamper: (q) => { q.filter_by_prefix = 'b'; } }), 401, /Invalid signature/);
  // A signature over the /apps path does not verify a request sent to the /api/v1 path.
  await expectError(signed(p, 'POST', '/api/v1/apps/app-id/events', { body, signPath: '/apps/app-id/events' }), 401, /Invalid signature/);
});

test('key + secret headers: wrong secret, wrong key, another app\'s pair, one header alone, none: 401', async () => {
  const other = await ctlJson(server, ['apps', 'create', '--name', 'other-creds']);
  const body = { name: 'e', channel: 'c', data: '1' };
  await expectOk(post(server, '/api/v1/apps/app-key/events', body), {});
  await expectError(post(server, '/apps/app-id/events', body, { ...keySecret, 'X-Relay-Secret': 'wrong' }), 401, /invalid app key or secret/);
  await expectError(post(server, '/apps/app-id/events', body, { ...keySecret, 'X-Relay-Key': 'wrong' }), 401, /invalid app key or secret/);
  await expectError(post(server, '/apps/app-id/events', body, { 'X-Relay-Key': other.key, 'X-Relay-Secret': other.secret }), 401, /invalid app key or secret/);
  await expectError(post(server, '/apps/app-id/events', body, { 'X-Relay-Key': h.APP.key }), 401, /invalid app key or secret/);
  await expectError(post(server, '/apps/app-id/events', body, {}), 401, /missing credentials/);
  await expectError(get(server, '/apps/app-id/channels', { Authorization: 'Basic YTpi' }), 401, /missing credentials/);
});

test('bearer tokens: valid on both path styles, stored hashed, recorded as used; another app\'s, revoked, expired: 401', async () => {
  const created = await ctlJson(server, ['tokens', 'create', '--app', 'app-id', '--name', 'errors']);
  const bearer = { Authorization: `Bearer ${created.secret}` };
  const body = { name: 'e', channel: 'c', data: '1' };
  await expectOk(post(server, '/apps/app-id/events', body, bearer), {});
  await expectOk(post(server, '/api/v1/apps/app-key/events', body, bearer), {});
  await expectOk(get(server, '/api/v1/apps/app-id/channels', bearer), { channels: {} });
  const listed = (await ctlJson(server, ['tokens', 'list', '--app', 'app-id'])).tokens.find((t) => t.id === created.token.id);
  assert.ok(Number(listed.last_used_unix_ms) > Date.now() - 60000, 'last-used time recorded');
  const other = await ctlJson(server, ['apps', 'create', '--name', 'other-token']);
  const foreign = await ctlJson(server, ['tokens', 'create', '--app', other.id]);
  await expectError(post(server, '/apps/app-id/events', body, { Authorization: `Bearer ${foreign.secret}` }), 401, /API token/);
  await expectError(post(server, '/apps/app-id/events', body, { Authorization: 'Bearer rlt_made_up' }), 401, /API token/);
  // Stored hashed: relay.db (and its write-ahead log) hold the token's SHA-256, never its text.
  const stored = ['relay.db', 'relay.db-wal'].map((f) => path.join(server.dataDir, f)).filter((f) => fs.existsSync(f))
    .map((f) => fs.readFileSync(f).toString('latin1')).join('');
  assert.ok(stored.includes(crypto.createHash('sha256').update(created.secret).digest('hex')), 'the hash is stored');
  assert.ok(!stored.includes(created.secret), 'the token text is not stored');
  assert.strictEqual((await h.relayctl(server, ['tokens', 'revoke', created.token.id])).code, 0);
  await expectError(post(server, '/api/v1/apps/app-id/events', body, bearer), 401, /invalid, expired or revoked API token/);
  // Expiry: a 1 s token works, then is refused (polled with a bound, not slept).
  const short = await ctlJson(server, ['tokens', 'create', '--app', 'app-id', '--expires-in', '1s']);
  const call = () => get(server, '/api/v1/apps/app-id/channels', { Authorization: `Bearer ${short.secret}` });
  assert.strictEqual((await call()).status, 200);
  await expectError(until(call, (r) => r.status !== 200), 401, /expired/);
});

test('unknown app 404, unknown route 404, disabled app 403 on every path style', async () => {
  const body = { name: 'e', channel: 'c', data: '1' };
  await expectError(post(server, '/apps/no-such-app/events', body), 404, /app 'no-such-app' not found/);
  await expectError(get(server, '/api/v1/apps/no-such-app/channels'), 404, /not found/);
  await expectError(signed(server.httpPort, 'GET', '/apps/no-such-app/channels'), 404, /not found/);
  await expectError(post(server, '/apps/app-id/nowhere', {}), 404, /No route for POST/);
  await expectError(get(server, '/apps/app-id/events'), 404, /No route for GET/);
  await expectError(get(server, '/api/v1/apps/app-id/channels/a/b/c'), 404, /No route/);
  await expectError(get(server, '/api/v2/apps/app-id/channels'), 404, /No route/);
  await expectError(get(server, '/nothing-here'), 404, /No route/);
  const off = await ctlJson(server, ['apps', 'create', '--name', 'switched-off']);
  assert.strictEqual((await h.relayctl(server, ['apps', 'disable', off.id])).code, 0);
  const creds = { 'X-Relay-Key': off.key, 'X-Relay-Secret': off.secret };
  await expectError(post(server, `/apps/${off.id}/events`, body, creds), 403, /disabled/);
  await expectError(post(server, `/api/v1/apps/${off.key}/batch_events`, { batch: [{ ...body }] }, creds), 403, /disabled/);
  await expectError(get(server, `/apps/${off.key}/channels`, creds), 403, /disabled/);
  const offSdk = new PusherServer({ appId: off.id, key: off.key, secret: off.secret, host: '127.0.0.1', port: String(server.httpPort), useTLS: false });
  const e = await sdkError(offSdk.trigger('c', 'e', {}));
  assert.strictEqual(e.status, 403);
  assert.match(JSON.parse(e.body).error, /disabled/);
  assert.strictEqual((await h.relayctl(server, ['apps', 'enable', off.id])).code, 0);
  await expectOk(post(server, `/apps/${off.id}/events`, body, creds), {});
});

test('POST events validation: name, channels, data, socket_id, info, body', async () => {
  const ev = (o) => post(server, '/api/v1/apps/app-id/events', { name: 'e', channels: ['c'], data: '1', ...o });
  await expectOk(ev({ name: 'n'.repeat(200) }), {});
  await expectError(ev({ name: 'n'.repeat(201) }), 400, /event name is longer than 200 characters/);
  await expectError(ev({ name: 'pusher:subscribe' }), 400, /reserved/);
  await expectError(ev({ name: 'pusher_internal:x' }), 400, /reserved/);
  await expectError(ev({ name: '' }), 400, /event name is required/);
  await expectError(ev({ name: 7 }), 400, /'name' must be a string/);
  const many = (n) => Array.from({ length: n }, (_, i) => `ch-${i}`);
  await expectOk(ev({ channels: many(100) }), {});
  await expectError(ev({ channels: many(101) }), 400, /at most 100 channels/);
  await expectError(ev({ channels: [] }), 400, /at least one channel/);
  await expectError(post(server, '/apps/app-id/events', { name: 'e', data: '1' }), 400, /missing 'channels'/);
  await expectError(ev({ channels: [1] }), 400, /channels must be strings/);
  await expectError(ev({ channels: ['bad name'] }), 400, /invalid channel 'bad name'/);
  await expectError(ev({ channels: ['ok', 'bad*name'] }), 400, /invalid channel 'bad\*name'/);
  await expectError(ev({ channels: ['x'.repeat(201)] }), 400, /longer than/);
  await expectError(ev({ channels: ['private-encrypted-a', 'private-encrypted-b'] }), 400, /exactly one channel/);
  await expectOk(ev({ data: 'd'.repeat(10240) }), {});
  await expectError(ev({ data: 'd'.repeat(10241) }), 413, /10241 bytes; the limit is 10240/);
  await expectError(post(server, '/apps/app-id/events', { name: 'e', channels: ['c'] }), 400, /missing 'data'/);
  await expectError(ev({ socket_id: 'abc' }), 400, /invalid socket_id 'abc'/);
  await expectError(ev({ info: 'bogus' }), 400, /unsupported info attribute 'bogus'/);
  await expectError(ev({ info: 'subscription_count,cache2' }), 400, /unsupported info attribute 'cache2'/);
  await expectError(post(server, '/apps/app-id/events', '{oops'), 400, /not valid JSON/);
  await expectError(post(server, '/apps/app-id/events', '[1]'), 400, /must be a JSON object/);
  await expectError(post(server, '/apps/app-id/events', ''), 400, /body is empty/);
  await expectError(get(server, '/apps/app-id/channels?info=subscription_count&info=bogus'), 400, /query parameter 'info' is repeated/);
  await expectError(signed(server.httpPort, 'GET', '/apps/app-id/channels', { query: { filter_by_prefix: 'a' },
    tamper: (q) => { q.FILTER_BY_PREFIX = 'b'; } }), 400, /is repeated/);
  await expectError(ev({ data: 'd'.repeat(300 * 1024) }), 413, /Request body is too large/);
  // The SDK itself refuses most of these; signed raw requests get the same answers.
  await expectError(signed(server.httpPort, 'POST', '/apps/app-key/events', { body: { name: 'e', channels: many(101), data: '1' } }), 400, /at most 100 channels/);
  await expectError(signed(server.httpPort, 'POST', '/apps/app-id/events', { body: { name: 'e', channel: 'c', data: 'd'.repeat(10241) } }), 413, /the limit is 10240/);
});

test('info on triggers: per channel for events (channel or channels), per item for batches', async () => {
  const c = h.client(server, h.authOptions(server, () => ({ user_id: 'info-user' })));
  try {
    const pub = c.subscribe('info-pub');
    const pres = c.subscribe('presence-info');
    await Promise.all([h.once(pub, 'pusher:subscription_succeeded'), h.once(pres, 'pusher:subscription_succeeded')]);
    const s = h.sdk(server);
    const res = await s.trigger(['info-pub', 'presence-info', 'info-empty'], 'e', {}, { info: 'subscription_count,user_count' });
    assert.deepStrictEqual(await res.json(), { channels: {
      'info-pub': { subscription_count: 1 },
      'presence-info': { user_count: 1, subscription_count: 1 },
      'info-empty': { subscription_count: 0 } } });
    await expectOk(post(server, '/apps/app-key/events', { name: 'e', channel: 'presence-info', data: '1', info: 'user_count' }),
      { channels: { 'presence-info': { user_count: 1 } } });
    // A channel named twice is one target: described once (exact text: JSON.parse would hide a
    // duplicate key) and published once.
    const seen = [];
    pub.bind('twice', (d) => seen.push(d));
    const dup = await post(server, '/apps/app-id/events', { name: 'twice', channels: ['info-pub', 'info-pub'], data: '1', info: 'subscription_count' });
    assert.strictEqual(await dup.text(), '{"channels":{"info-pub":{"subscription_count":1}}}');
    const fence = h.once(pub, 'fence');
    await s.trigger('info-pub', 'fence', {});
    await fence;
    assert.deepStrictEqual(seen, [1]);
    const batch = await sdkAt(server, '/api/v1/apps/app-key').triggerBatch([
      { channel: 'presence-info', name: 'a', data: '1', info: 'user_count' },
      { channel: 'info-pub', name: 'b', data: '2' },
      { channel: 'info-pub', name: 'c', data: '3', info: 'subscription_count' }]);
    assert.deepStrictEqual(await batch.json(), { batch: [{ user_count: 1 }, {}, { subscription_count: 1 }] });
    const plain = await s.triggerBatch([{ channel: 'info-pub', name: 'd', data: '4' }]);
    assert.deepStrictEqual(await plain.json(), {});
  } finally { c.disconnect(); }
});

test('POST batch_events validation: 10 items, 11 -> 400, channels in an item, bad item -> nothing published', async () => {
  const c = h.client(server);
  try {
    const ch = c.subscribe('batch-v');
    await h.once(ch, 'pusher:subscription_succeeded');
    const seen = [];
    ch.bind_global((name) => { if (!name.startsWith('pusher:')) seen.push(name); });
    const item = (i) => ({ channel: 'batch-v', name: `b${i}`, data: String(i) });
    const items = (n) => Array.from({ length: n }, (_, i) => item(i));
    await expectOk(post(server, '/apps/app-id/batch_events', { batch: items(10) }), {});
    await expectError(post(server, '/api/v1/apps/app-key/batch_events', { batch: items(11) }), 400, /more than 10/);
    const e = await sdkError(h.sdk(server).triggerBatch(items(11)));
    assert.strictEqual(e.status, 400);
    await expectError(post(server, '/apps/app-id/batch_events', { batch: [] }), 400, /batch is empty/);
    await expectError(post(server, '/apps/app-id/batch_events', {}), 400, /missing 'batch'/);
    await expectError(post(server, '/apps/app-id/batch_events', { batch: [{ channels: ['a'], name: 'x', data: '1' }] }), 400, /not 'channels'/);
    await expectError(post(server, '/apps/app-id/batch_events', { batch: [{ name: 'x', data: '1' }] }), 400, /missing 'channel'/);
    // One bad item refuses the whole batch before anything is published.
    for (const [bad, status, gist] of [[{ name: 'pusher:x' }, 400, /reserved/], [{ channel: 'bad name' }, 400, /invalid channel/],
      [{ data: 'd'.repeat(10241) }, 413, /limit is 10240/], [{ info: 'nope' }, 400, /unsupported info attribute/]]) {
      await expectError(post(server, '/apps/app-id/batch_events', { batch: [{ channel: 'batch-v', name: 'never', data: '1' },
        { ...item(99), ...bad }] }), status, gist);
    }
    const after = h.once(ch, 'after');
    await h.sdk(server).trigger('batch-v', 'after', {});
    await after;  // events on one channel arrive in order: a published 'never' would be here by now
    assert.deepStrictEqual(seen, [...items(10).map((i) => i.name), 'after']);
  } finally { c.disconnect(); }
});

test('channel queries from the cluster view across two data planes', async () => {
  const split = await h.startSplit(['--trigger-rate-limit', '0']);
  const second = await h.addDataPlane(split, 'n2');
  const a = h.client(split, h.authOptions(split, () => ({ user_id: 'ann', user_info: { n: 'A' } })));
  const b = h.client(second, h.authOptions(split, () => ({ user_id: 'ben', user_info: { n: 'B' } })));
  try {
    const pa = a.subscribe('presence-q');
    const pb = b.subscribe('presence-q');
    const qa = a.subscribe('q-pub');
    const qb = b.subscribe('q-pub');
    await Promise.all([pa, pb, qa, qb].map((ch) => h.once(ch, 'pusher:subscription_succeeded')));
    const s = h.sdk(split);
    const q = async (path, params) => (await s.get({ path, params })).json();
    // Both nodes' subscriptions reach the control plane asynchronously: poll, bounded.
    const one = await until(() => q('/channels/presence-q', { info: 'user_count,subscription_count' }),
      (v) => v.user_count === 2 && v.subscription_count === 2);
    assert.deepStrictEqual(one, { occupied: true, user_count: 2, subscription_count: 2 });
    assert.deepStrictEqual(await q('/channels/q-pub', { info: 'subscription_count' }), { occupied: true, subscription_count: 2 });
    assert.deepStrictEqual(await q('/channels', { filter_by_prefix: 'presence-', info: 'user_count' }), { channels: { 'presence-q': { user_count: 2 } } });
    assert.deepStrictEqual(await q('/channels', { info: 'subscription_count' }),
      { channels: { 'presence-q': { subscription_count: 2 }, 'q-pub': { subscription_count: 2 } } });
    assert.deepStrictEqual(await q('/channels', { filter_by_prefix: 'q-' }), { channels: { 'q-pub': {} } });
    const users = await q('/channels/presence-q/users', {});
    assert.deepStrictEqual(users.users.map((u) => u.id).sort(), ['ann', 'ben']);
    const withInfo = await q('/channels/presence-q/users', { with_user_info: '1' });
    assert.deepStrictEqual(withInfo.users.sort((x, y) => x.id.localeCompare(y.id)), [{ id: 'ann', user_info: { n: 'A' } }, { id: 'ben', user_info: { n: 'B' } }]);
    assert.deepStrictEqual(await q('/channels/nobody-here', { info: 'subscription_count' }), { occupied: false, subscription_count: 0 });
    assert.deepStrictEqual(await q('/channels/presence-empty/users', {}), { users: [] });
    // cache channels: {occupied, cache:{event,data,ttl}}, null before the first event
    assert.deepStrictEqual(await q('/channels/cache-q', { info: 'cache' }), { occupied: false, cache: null });
    await s.trigger('cache-q', 'tick', { p: 1 });
    const cached = await q('/channels/cache-q', { info: 'cache' });
    assert.deepStrictEqual({ ...cached, cache: { ...cached.cache, ttl: 0 } }, { occupied: false, cache: { event: 'tick', data: '{"p":1}', ttl: 0 } });
    assert.ok(cached.cache.ttl > 0 && cached.cache.ttl <= 1800);
    // errors, raw and through both path styles
    const g = (p) => get(split, p);
    await expectError(g('/apps/app-id/channels?info=user_count'), 400, /user_count is only available with filter_by_prefix=presence-/);
    await expectError(g('/api/v1/apps/app-key/channels?info=cache'), 400, /cache is not available when listing/);
    await expectError(g('/apps/app-id/channels?info=members'), 400, /unsupported info attribute 'members'/);
    await expectError(g('/apps/app-id/channels/q-pub?info=user_count'), 400, /only available for presence channels/);
    await expectError(g('/apps/app-id/channels/q-pub?info=cache'), 400, /only available for cache channels/);
    await expectError(g('/api/v1/apps/app-id/channels/q-pub?info=bogus'), 400, /unsupported info attribute 'bogus'/);
    await expectError(g('/apps/app-id/channels/bad%20name'), 400, /invalid channel 'bad name'/);
    await expectError(g('/apps/app-key/channels/q-pub/users'), 400, /users are only available for presence channels/);
    await expectError(g('/api/v1/apps/app-id/channels/private-x/users'), 400, /only available for presence channels/);
    const e = await sdkError(s.get({ path: '/channels/q-pub/users' }));
    assert.strictEqual(e.status, 400);
  } finally { a.disconnect(); b.disconnect(); }
});

test('users/{id}/events and users/{id}/terminate_connections, both path styles, key as {app}', async () => {
  const c = h.client(server, h.authOptions(server, () => ({ id: 'u-term' })));
  try {
    await h.signIn(c);
    let got = null;
    c.user.bind('note', (d) => { got = d; });
    // The control plane learns of the sign-in asynchronously: resend, bounded.
    await h.resendUntil(() => expectOk(post(server, '/api/v1/apps/app-key/users/u-term/events', { name: 'note', data: '{"n":1}' }), {}),
      () => got !== null);
    assert.deepStrictEqual(got, { n: 1 });
    await expectError(post(server, '/apps/app-id/users/u-term/events', { name: 'pusher:x', data: '1' }), 400, /reserved/);
    await expectError(post(server, '/apps/app-id/users/u-term/events', { name: 'n', data: 'd'.repeat(10241) }), 413, /limit is 10240/);
    await expectError(post(server, '/apps/app-id/users/u-term/events', { data: '1' }), 400, /missing 'name'/);
    await expectError(post(server, '/apps/app-id/users/u-term/events', { name: 'n', data: '1', socket_id: 'x' }), 400, /invalid socket_id/);
    await expectError(post(server, '/apps/app-id/users/u-term/bogus', {}), 404, /No route/);
    const closed = new Promise((resolve) => c.connection.bind('state_change', (s) => {
      if (s.current !== 'connected') resolve(s.current);
    }));
    await expectOk(signed(server.httpPort, 'POST', '/apps/app-key/users/u-term/terminate_connections', { body: {} }), {});
    assert.ok(['disconnected', 'unavailable', 'failed', 'connecting'].includes(await closed));
    await expectOk(post(server, '/api/v1/apps/app-id/users/nobody/terminate_connections', {}), {});
  } finally { c.disconnect(); }
});

test('POST /api/v1/apps/{app}/auth signs private and presence subscriptions that pusher-js uses', async () => {
  const token = (await ctlJson(server, ['tokens', 'create', '--app', 'app-id'])).secret;
  const signer = h.sdk(server);
  const checks = [];
  const c = h.client(server, { channelAuthorization: { customHandler: async (p, cb) => {
    const presence = p.channelName.startsWith('presence-');
    const channelData = presence ? JSON.stringify({ user_id: 'u-auth', user_info: { name: 'Ada' } }) : undefined;
    const r = await post(server, '/api/v1/apps/app-key/auth', { socket_id: p.socketId, channel_name: p.channelName,
      ...(presence ? { channel_data: channelData } : {}) }, { Authorization: `Bearer ${token}` });
    const body = await r.json();
    // The same signature the SDK computes with the app secret.
    checks.push([body, signer.authorizeChannel(p.socketId, p.channelName, presence ? JSON.parse(channelData) : undefined)]);
    cb(null, body);
  } } });
  try {
    const priv = c.subscribe('private-authz');
    await h.once(priv, 'pusher:subscription_succeeded');
    const pres = c.subscribe('presence-authz');
    const { data: members } = await h.once(pres, 'pusher:subscription_succeeded');
    assert.strictEqual(members.me.id, 'u-auth');
    assert.deepStrictEqual(members.me.info, { name: 'Ada' });
    assert.strictEqual(checks.length, 2);
    assert.deepStrictEqual(checks[0][0], { auth: checks[0][1].auth });
    assert.strictEqual(checks[1][0].auth, checks[1][1].auth);
    assert.deepStrictEqual(JSON.parse(checks[1][0].channel_data), JSON.parse(checks[1][1].channel_data));
    const got = h.once(priv, 'secret');
    await signer.trigger('private-authz', 'secret', 'ok');
    assert.strictEqual((await got).data, 'ok');
  } finally { c.disconnect(); }
  const auth = (b) => post(server, '/apps/app-id/auth', b);
  await expectError(auth({ socket_id: '1.2', channel_name: 'public-ch' }), 400, /only private and presence channels/);
  await expectError(auth({ socket_id: '1.2', channel_name: 'presence-x' }), 400, /channel_data/);
  await expectError(auth({ socket_id: '1.2', channel_name: 'presence-x', channel_data: '{"name":"no id"}' }), 400, /user_id/);
  await expectError(auth({ socket_id: 'nope', channel_name: 'private-x' }), 400, /invalid socket_id/);
  await expectError(auth({ channel_name: 'private-x' }), 400, /missing 'socket_id'/);
  await expectError(auth({ socket_id: '1.2', channel_name: 'bad name' }), 400, /invalid channel/);
  await expectError(auth({ socket_id: '1.2' }), 400, /channel_name/);
  await expectError(auth({ socket_id: '1.2', user_data: '{"name":"no id"}' }), 400, /user_data/);
  // pusher-js needs a shared_secret for these, derived from a master key Relay never holds.
  await expectError(auth({ socket_id: '1.2', channel_name: 'private-encrypted-x' }), 400, /private-encrypted- channels must be authorized by the app's own backend/);
  await expectError(post(server, '/apps/app-id/auth', { socket_id: '1.2', channel_name: 'private-x' }, { ...keySecret, 'X-Relay-Secret': 'x' }), 401, /invalid app key or secret/);
});

test('POST auth reproduces the spec\'s signature vectors E, F and G', async () => {
  const v = await ctlJson(server, ['apps', 'create', '--name', 'vectors', '--id', '12345', '--key', 'a1b2c3d4e5f6a7b8c9d0', '--secret', '0f9e8d7c6b5a4f3e2d1c']);
  const creds = { 'X-Relay-Key': v.key, 'X-Relay-Secret': '0f9e8d7c6b5a4f3e2d1c' };
  await expectOk(post(server, '/apps/12345/auth', { socket_id: '123.456', channel_name: 'private-orders' }, creds),
    { auth: 'a1b2c3d4e5f6a7b8c9d0:d4649f03a6789003f2de89c82d64e253d448c49683ab425c5266762abaf81e59' });
  const cd = '{"user_id":"u-1","user_info":{"name":"Ada"}}';
  await expectOk(post(server, '/api/v1/apps/a1b2c3d4e5f6a7b8c9d0/auth', { socket_id: '123.456', channel_name: 'presence-room', channel_data: cd }, creds),
    { auth: 'a1b2c3d4e5f6a7b8c9d0:94dc1524eb96454db6893c2af4c815e35aea037aca6d50e0f7f89b8fbee1185b', channel_data: cd });
  const ud = '{"id":"u-1","user_info":{"name":"Ada"},"watchlist":["u-2","u-3"]}';
  await expectOk(post(server, '/apps/12345/auth', { socket_id: '123.456', user_data: ud }, creds),
    { auth: 'a1b2c3d4e5f6a7b8c9d0:743254ac2a329b043c1ccf21549dfcec4c409da210c32b6f38c0300722baaf7e', user_data: ud });
});

test('secret rotation: both secrets verify in the overlap (all methods, /auth signs with the new one); the old one stops after it or when the overlap is ended', async () => {
  const app = await ctlJson(server, ['apps', 'create', '--name', 'rotation']);
  const rotated = await ctlJson(server, ['apps', 'rotate-secret', app.id, '--overlap', '2s']);
  const viaHeaders = (secret) => post(server, `/api/v1/apps/${app.key}/events`, { name: 'e', channel: 'c', data: '1' },
    { 'X-Relay-Key': app.key, 'X-Relay-Secret': secret });
  const viaHmac = (secret) => signed(server.httpPort, 'POST', `/apps/${app.id}/events`, { key: app.key, secret, body: { name: 'e', channel: 'c', data: '1' } });
  for (const secret of [app.secret, rotated.secret]) {
    await expectOk(viaHeaders(secret), {});
    await expectOk(viaHmac(secret), {});
  }
  const signedAuth = await (await post(server, `/apps/${app.id}/auth`, { socket_id: '1.2', channel_name: 'private-r' },
    { 'X-Relay-Key': app.key, 'X-Relay-Secret': app.secret })).json();
  const expected = new PusherServer({ appId: app.id, key: app.key, secret: rotated.secret }).authorizeChannel('1.2', 'private-r');
  assert.strictEqual(signedAuth.auth, expected.auth);
  // After the overlap (polled, bounded) the old secret is refused and the new one still works.
  await expectError(until(() => viaHmac(app.secret), (r) => r.status !== 200), 401, /Invalid signature/);
  await expectError(viaHeaders(app.secret), 401, /invalid app key or secret/);
  await expectOk(viaHmac(rotated.secret), {});
  // Completing a rotation early: --end-overlap drops the previous secret at once.
  const again = await ctlJson(server, ['apps', 'rotate-secret', app.id, '--overlap', '1h']);
  await expectOk(viaHmac(rotated.secret), {});
  // The data planes get rotations at once too: a subscription signed with the previous secret is
  // accepted during the overlap and refused once it is ended.
  let signWith = rotated.secret;
  const c = new (require('pusher-js'))(app.key, { wsHost: '127.0.0.1', wsPort: server.wsPort, forceTLS: false,
    enabledTransports: ['ws'], cluster: 'mt1', disableStats: true, channelAuthorization: { customHandler: (p, cb) =>
      cb(null, new PusherServer({ appId: app.id, key: app.key, secret: signWith }).authorizeChannel(p.socketId, p.channelName)) } });
  // Resolves 'ok' or 'refused', whichever pusher-js reports first for a new subscription.
  const trySubscribe = (name) => new Promise((resolve, reject) => {
    const ch = c.subscribe(name);
    const t = setTimeout(() => reject(new Error(`no answer to subscribing ${name}`)), 10000);
    const done = (outcome) => { clearTimeout(t); ch.unbind_all(); c.unsubscribe(name); resolve(outcome); };
    ch.bind('pusher:subscription_succeeded', () => done('ok'));
    ch.bind('pusher:subscription_error', () => done('refused'));
  });
  let attempt = 0;
  try {
    assert.strictEqual(await trySubscribe('private-during-overlap'), 'ok');
    const ended = await ctlJson(server, ['apps', 'rotate-secret', app.id, '--end-overlap']);
    assert.strictEqual(await until(() => trySubscribe(`private-after-${attempt++}`), (o) => o === 'refused'), 'refused');
    signWith = again.secret;
    assert.strictEqual(await trySubscribe('private-current'), 'ok');
    assert.strictEqual(ended.secret, again.secret);
  } finally { c.disconnect(); }
  await expectError(viaHmac(rotated.secret), 401, /Invalid signature/);
  await expectError(viaHeaders(rotated.secret), 401, /invalid app key or secret/);
  await expectOk(viaHeaders(again.secret), {});
});

const expectRateHeaders = (r, limit, remaining) => {
  assert.strictEqual(r.headers.get('x-ratelimit-limit'), String(limit));
  assert.strictEqual(r.headers.get('x-ratelimit-remaining'), String(remaining));
  const reset = Number(r.headers.get('x-ratelimit-reset'));
  const now = Date.now() / 1000;
  assert.ok(reset > now - 1, `reset ${reset} is in the future`);
  return reset;
};

test('per-address trigger limit: X-RateLimit-* on every trigger answer, 429 with Retry-After, other endpoints not limited', async () => {
  // The window is a fixed minute: start well inside one so the counts below are exact.
  await h.waitFor(() => (Date.now() / 1000) % 60 < 50, 11000, 'a fresh minute window');
  const s = await h.startRelay(['--trigger-rate-limit', '5']);
  const ev = { name: 'e', channel: 'c', data: '1' };
  let r = await expectOk(post(s, '/apps/app-id/events', ev), {});
  const reset = expectRateHeaders(r, 5, 4);
  assert.ok(reset <= Date.now() / 1000 + 61);
  // Invalid requests still count against the address, and say so.
  r = await expectError(post(s, '/api/v1/apps/app-key/events', { ...ev, name: 'pusher:x' }), 400, /reserved/);
  expectRateHeaders(r, 5, 3);
  r = await expectError(post(s, '/apps/app-id/batch_events', '{not json'), 400, /not valid JSON/);
  expectRateHeaders(r, 5, 2);
  r = await expectOk(post(s, '/apps/app-id/batch_events', { batch: [{ ...ev }] }), {});
  expectRateHeaders(r, 5, 1);
  r = await expectOk(post(s, '/apps/app-id/users/u/events', { name: 'e', data: '1' }), {});
  expectRateHeaders(r, 5, 0);
  for (const [path, body] of [['/apps/app-id/events', ev], ['/api/v1/apps/app-id/batch_events', { batch: [ev] }], ['/apps/app-key/users/u/events', ev]]) {
    r = await expectError(post(s, path, body), 429, /rate limit exceeded: at most 5 trigger requests per minute/);
    expectRateHeaders(r, 5, 0);
    const retry = Number(r.headers.get('retry-after'));
    assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
  }
  // The SDK sees the same 429.
  const e = await sdkError(h.sdk(s).trigger('c', 'e', {}));
  assert.strictEqual(e.status, 429);
  // Queries are not trigger requests: not limited, no headers.
  r = await expectOk(get(s, '/apps/app-id/channels'), { channels: {} });
  assert.strictEqual(r.headers.get('x-ratelimit-limit'), null);
  // Unauthenticated requests are refused before they count.
  await expectError(post(s, '/apps/app-id/events', ev, {}), 401, /missing credentials/);
  // The default is 300 per minute.
  const d = await h.startRelay();
  expectRateHeaders(await expectOk(post(d, '/apps/app-id/events', ev), {}), 300, 299);
});

test('per-app backend event rate: 429 with the app\'s figures; a request over the whole limit is 403', async () => {
  const s = await h.startRelay(['--trigger-rate-limit', '0']);
  assert.strictEqual((await h.relayctl(s, ['apps', 'update', 'app-id', '--max-backend-events-per-second', '3'])).code, 0);
  await expectError(post(s, '/apps/app-id/events', { name: 'e', channels: ['a', 'b', 'c', 'd'], data: '1' }), 403,
    /4 messages, more than app 'app-id' may send in a second \(3\)/);
  const r = await until(() => post(s, '/apps/app-id/events', { name: 'e', channels: ['a', 'b'], data: '1' }),
    (x) => x.status === 429, 5000);
  await expectError(Promise.resolve(r), 429, /over its limit of 3 backend events per second/);
  assert.strictEqual(r.headers.get('x-ratelimit-limit'), '3');
  assert.strictEqual(r.headers.get('retry-after'), '1');
});

test('daily quota: 429 when used up, 403 for one request over the whole quota, invalid requests not counted; quota and app changes kept across a SIGKILL', async () => {
  // The day is a UTC day: do not start in its last seconds.
  await h.waitFor(() => (Date.now() / 1000) % 86400 < 86400 - 60, 61000, 'not just before 00:00 UTC');
  const split = await h.startSplit(['--trigger-rate-limit', '0']);
  const app = await ctlJson(split, ['apps', 'create', '--name', 'quota']);
  assert.strictEqual((await h.relayctl(split, ['apps', 'update', app.id, '--max-daily-messages', '5'])).code, 0);
  const creds = { 'X-Relay-Key': app.key, 'X-Relay-Secret': app.secret };
  const ev = (channels, extra = {}) => post(split, `/apps/${app.id}/events`, { name: 'e', channels, data: '1', ...extra }, creds);
  // Refused requests publish nothing and use no quota.
  await expectError(ev(['a', 'b', 'c'], { name: 'pusher:no' }), 400, /reserved/);
  await expectError(ev(['a', 'b', 'c'], { data: 'd'.repeat(10241) }), 413, /limit/);
  await expectError(ev(['a', 'b', 'c', 'd', 'e', 'f']), 403, /6 messages, more than the daily quota .*\(5\); it can never be accepted/);
  // Counting: one message per channel, per batch item, per send-to-user.
  await expectOk(ev(['a', 'b']), {});                                                       // 2
  await expectOk(post(split, `/api/v1/apps/${app.key}/batch_events`, { batch: [{ channel: 'a', name: 'e', data: '1' }] }, creds), {});  // 3
  await expectOk(post(split, `/apps/${app.id}/users/u/events`, { name: 'e', data: '1' }, creds), {});  // 4
  let r = await expectError(ev(['a', 'b']), 429, /has used 4 of its daily quota of 5 messages; it resets at 00:00 UTC/);
  const midnight = Math.floor(Date.now() / 86400000) * 86400 + 86400;
  assert.strictEqual(expectRateHeaders(r, 5, 1), midnight);
  await expectOk(ev(['a']), {});                                                            // 5
  r = await expectError(ev(['a']), 429, /daily quota of 5/);
  assert.strictEqual(expectRateHeaders(r, 5, 0), midnight);
  const retry = Number(r.headers.get('retry-after'));
  assert.ok(Math.abs(retry - (midnight - Date.now() / 1000)) <= 2, `Retry-After ${retry}`);
  // The day's count survives a control plane killed with SIGKILL, as do app changes and tokens.
  const token = (await ctlJson(split, ['tokens', 'create', '--app', app.id])).secret;
  assert.strictEqual((await h.relayctl(split, ['apps', 'update', app.id, '--max-event-payload-bytes', '100'])).code, 0);
  await h.restartControlPlane(split, 'SIGKILL');
  const s = new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port: String(split.httpPort), useTLS: false });
  const e = await sdkError(s.trigger('a', 'e', {}));
  assert.strictEqual(e.status, 429);
  assert.match(JSON.parse(e.body).error, /has used 5 of its daily quota of 5/);
  assert.strictEqual((await h.relayctl(split, ['apps', 'update', app.id, '--max-daily-messages', '100'])).code, 0);
  await expectOk(post(split, `/apps/${app.id}/events`, { name: 'e', channel: 'a', data: '1' }, { Authorization: `Bearer ${token}` }), {});
  await expectError(ev(['a'], { data: 'd'.repeat(101) }), 413, /101 bytes; the limit is 100/);
  // A change made after the restart still reaches the re-attached data plane at once: disabling
  // closes the app's open connections with 4003.
  const c = new (require('pusher-js'))(app.key, { wsHost: '127.0.0.1', wsPort: split.wsPort, forceTLS: false,
    enabledTransports: ['ws'], cluster: 'mt1', disableStats: true });
  try {
    await h.once(c.connection, 'connected');
    const closed = h.once(c.connection, 'error');
    assert.strictEqual((await h.relayctl(split, ['apps', 'disable', app.id])).code, 0);
    assert.strictEqual((await closed).data.data.code, 4003);
  } finally { c.disconnect(); }
  await h.restartControlPlane(split, 'SIGKILL');
  await expectError(ev(['a']), 403, /disabled/);
});

test('a plan\'s daily quota applies when the app sets none: free = 200,000 messages', async () => {
  await h.waitFor(() => (Date.now() / 1000) % 86400 < 86400 - 120, 121000, 'not just before 00:00 UTC');
  const s = await h.startRelay(['--trigger-rate-limit', '0']);
  const app = await ctlJson(s, ['apps', 'create', '--name', 'free-plan', '--plan', 'free']);
  const creds = { 'X-Relay-Key': app.key, 'X-Relay-Secret': app.secret };
  const channels = Array.from({ length: 100 }, (_, i) => `f-${i}`);
  // 2,000 triggers of 100 channels use the whole quota (10 at a time).
  for (let i = 0; i < 200; i++) {
    const rs = await Promise.all(Array.from({ length: 10 }, () => post(s, `/apps/${app.id}/events`, { name: 'e', channels, data: '1' }, creds)));
    assert.deepStrictEqual(rs.map((r) => r.status), Array(10).fill(200));
    await Promise.all(rs.map((r) => r.arrayBuffer()));
  }
  const r = await expectError(post(s, `/apps/${app.id}/events`, { name: 'e', channel: 'one-more', data: '1' }, creds), 429, /daily quota of 200000 messages/);
  assert.strictEqual(r.headers.get('x-ratelimit-limit'), '200000');
  assert.strictEqual(r.headers.get('x-ratelimit-remaining'), '0');
  // A plan change applies at once: startup allows 1,000,000.
  assert.strictEqual((await h.relayctl(s, ['apps', 'update', app.id, '--plan', 'startup'])).code, 0);
  await expectOk(post(s, `/apps/${app.id}/events`, { name: 'e', channel: 'one-more', data: '1' }, creds), {});
});

test('the gRPC public API through relayctl (real binary): the same rules, canonical codes as exit codes', async () => {
  // relayctl calls relay.v1.Channels with the app's key and secret in call metadata; its exit
  // codes map INVALID_ARGUMENT/OUT_OF_RANGE to 6, NOT_FOUND to 5, and the policy refusals
  // (PERMISSION_DENIED, RESOURCE_EXHAUSTED, FAILED_PRECONDITION) to 7 -- not 4, which is only a
  // bad admin credential -- with the server's message on stderr.
  const s = await h.startRelay(['--trigger-rate-limit', '0']);
  const app = await ctlJson(s, ['apps', 'create', '--name', 'grpc-rules']);
  assert.strictEqual((await h.relayctl(s, ['apps', 'update', app.id, '--max-daily-messages', '2'])).code, 0);
  const publish = (args) => h.relayctl(s, ['publish', '--app', app.key, '--event', 'e', '--data', '{}', ...args]);
  const expectExit = (r, code, gist) => {
    assert.strictEqual(r.code, code, r.stderr);
    assert.match(r.stderr, gist);
  };
  expectExit(await publish(['--channel', 'bad name']), 6, /invalid channel 'bad name'/);
  expectExit(await publish(['--channel', 'c', '--event', 'pusher:x']), 6, /reserved/);
  expectExit(await publish(['--channel', 'c', '--data', 'd'.repeat(10241)]), 6, /10241 bytes; the limit is 10240/);
  expectExit(await publish(['--channel', 'a', '--channel', 'b', '--channel', 'c']), 7, /more than the daily quota/);
  expectExit(await publish(['--channel', 'a', '--channel', 'b']), 0, /^$/);  // the refusals above used none of it
  expectExit(await publish(['--channel', 'a']), 7, /has used 2 of its daily quota of 2/);
  expectExit(await h.relayctl(s, ['users', '--app', app.id, 'public-x']), 6, /only available for presence channels/);
  expectExit(await h.relayctl(s, ['channel', '--app', app.id, 'bad name']), 6, /invalid channel/);
  // A name merely containing "cache-" is not a cache channel (relayctl used to ask it for cache).
  expectExit(await h.relayctl(s, ['channel', '--app', app.id, 'my-cache-notes']), 0, /^$/);
  expectExit(await h.relayctl(s, ['channel', '--app', app.id, 'private-cache-notes']), 0, /^$/);
  assert.strictEqual((await h.relayctl(s, ['apps', 'disable', app.id])).code, 0);
  expectExit(await publish(['--channel', 'a']), 7, /disabled/);
  expectExit(await h.relayctl(s, ['publish', '--app', 'no-such-app', '--channel', 'a', '--event', 'e', '--data', '{}']), 5, /not found/);
});

test('GET /, /ready and /health answer on relay, the control plane and a data plane; a data plane says where the API is', async () => {
  const split = await h.startSplit();
  const expected = { '/': 'OK', '/ready': '{"ready":true}', '/health': '{"status":"ok"}' };
  for (const port of [server.httpPort, split.httpPort, split.wsPort]) {
    for (const [p, body] of Object.entries(expected)) {
      const r = await fetch(`http://127.0.0.1:${port}${p}`);
      assert.strictEqual(r.status, 200, `${port}${p}`);
      assert.strictEqual(await r.text(), body);
    }
  }
  await expectError(post({ httpPort: split.wsPort }, '/apps/app-id/events', { name: 'e', channel: 'c', data: '1' }), 404,
    /data plane; the HTTP API is served by the control plane/);
  await expectError(post({ httpPort: split.httpPort }, '/ready', {}), 404, /No route for POST \/ready/);
});
