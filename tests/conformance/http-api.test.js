// The HTTP API with raw requests: each authentication method, both path styles, the app key in
// the path, error codes with JSON bodies, and the per-address trigger rate limit.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');

let server;
before(async () => { server = await h.startRelay(['--trigger-rate-limit', '20']); });
after(h.stopAll);

const url = (p) => `http://127.0.0.1:${server.httpPort}${p}`;
const post = (p, body, headers = {}) => fetch(url(p), { method: 'POST', headers, body: JSON.stringify(body) });
const keySecret = { 'X-Relay-Key': 'app-key', 'X-Relay-Secret': 'app-secret' };

test('key + secret headers, both path styles, app key in the path', async () => {
  const c = h.client(server);
  try {
    const ch = c.subscribe('api');
    await h.once(ch, 'pusher:subscription_succeeded');
    const got = h.once(ch, 'e2');
    assert.strictEqual((await post('/apps/app-id/events', { name: 'e1', channel: 'api', data: '1' }, keySecret)).status, 200);
    const r = await post('/api/v1/apps/app-key/events', { name: 'e2', channels: ['api'], data: '2', info: 'subscription_count' }, keySecret);
    assert.strictEqual(r.status, 200);
    assert.deepStrictEqual(await r.json(), { channels: { api: { subscription_count: 1 } } });
    assert.strictEqual((await got).data, 2);
  } finally { c.disconnect(); }
});

test('errors are JSON with the documented status codes', async () => {
  const cases = [
    [post('/apps/app-id/events', { name: 'e', channel: 'c', data: '1' }), 401],
    [post('/apps/app-id/events', { name: 'e', channel: 'c', data: '1' }, { ...keySecret, 'X-Relay-Secret': 'nope' }), 401],
    [post('/apps/missing/events', { name: 'e', channel: 'c', data: '1' }, keySecret), 404],
    [post('/apps/app-id/nowhere', {}, keySecret), 404],
    [fetch(url('/apps/app-id/events'), { method: 'POST', headers: keySecret, body: '{oops' }), 400],
    [post('/apps/app-id/events', { name: 'e', channel: 'c', data: 'x'.repeat(11000) }, keySecret), 413],
    [post('/apps/app-id/events', { name: 'e', channel: 'c', data: '1', socket_id: 'abc' }, keySecret), 400],
    [post('/apps/app-id/events', { name: 'e', channel: 'c', data: '1', info: 'bogus' }, keySecret), 400],
    [fetch(url('/apps/app-id/channels/public-x/users'), { headers: keySecret }), 400],
  ];
  for (const [pending, status] of cases) {
    const r = await pending;
    assert.strictEqual(r.status, status);
    const body = await r.json();
    assert.strictEqual(body.code, status);
    assert.ok(body.error.length > 0);
  }
});

test('send to a user via POST users/{id}/events, and signing via POST auth', async () => {
  const a = h.client(server, {
    userAuthentication: { customHandler: async (p, cb) => {
      const r = await post('/apps/app-id/auth', { socket_id: p.socketId, user_data: JSON.stringify({ id: 'u-77' }) }, keySecret);
      cb(null, await r.json());
    } },
  });
  try {
    await h.signIn(a);
    let got = null;
    a.user.bind('hello', (d) => { got = d; });
    await h.resendUntil(async () => {
      const r = await post('/apps/app-id/users/u-77/events', { name: 'hello', data: '{"x":1}' }, keySecret);
      assert.strictEqual(r.status, 200);
    }, () => got !== null, 10, 300);
    assert.deepStrictEqual(got, { x: 1 });
  } finally { a.disconnect(); }
});

test('the trigger rate limit answers 429 with X-RateLimit headers', async () => {
  let last;
  for (let i = 0; i < 40; i++) {
    last = await post('/apps/app-id/events', { name: 'e', channel: 'c', data: '1' }, keySecret);
    assert.ok(last.headers.get('x-ratelimit-limit'));
    if (last.status === 429) break;
  }
  assert.strictEqual(last.status, 429);
  assert.strictEqual(last.headers.get('x-ratelimit-limit'), '20');
  assert.strictEqual(last.headers.get('x-ratelimit-remaining'), '0');
  assert.ok(Number(last.headers.get('retry-after')) >= 1);
});

test('the documented curl examples work as written', async () => {
  const { execFileSync } = require('node:child_process');
  const fs = require('node:fs');
  const path = require('node:path');
  const fresh = await h.startRelay();  // the shared server's rate limit is spent by now
  const doc = fs.readFileSync(path.resolve(__dirname, '../../docs/http-api.md'), 'utf8');
  const block = doc.split('## Authentication')[1].split('```sh\n')[1].split('```')[0];
  // One example per "# method" comment; each must answer 200 as written (port aside).
  const examples = block.split(/^(?=# )/m).filter((e) => e.includes('curl'));
  assert.deepStrictEqual(examples.map((e) => e.split(/[\n(]/)[0].trim()), ['# key + secret', '# bearer token', '# HMAC signature']);
  const token = JSON.parse((await h.relayctl(fresh, ['tokens', 'create', '--app', 'app-id', '--json'])).stdout).secret;
  for (const example of examples) {
    const script = example.replaceAll('127.0.0.1:6001', `127.0.0.1:${fresh.httpPort}`)
      .replaceAll('curl ', "curl -s -o /dev/null -w '%{http_code}' ");
    const out = execFileSync('bash', ['-c', script], { env: { ...process.env, TOKEN: token } }).toString();
    assert.strictEqual(out, '200', example);
  }
});

test('an API token stops working when it expires', async () => {
  const created = JSON.parse((await h.relayctl(server, ['tokens', 'create', '--app', 'app-id', '--expires-in', '1s', '--json'])).stdout);
  const call = () => fetch(`http://127.0.0.1:${server.httpPort}/apps/app-id/channels`, { headers: { Authorization: `Bearer ${created.secret}` } });
  assert.strictEqual((await call()).status, 200);
  let status = 200;
  const t0 = Date.now();
  while (status === 200 && Date.now() - t0 < 10000) {
    status = (await call()).status;
    if (status === 200) await new Promise((r) => setTimeout(r, 200));
  }
  assert.strictEqual(status, 401);
});

test('X-Forwarded-For is honoured only from trusted proxies', async () => {
  const run = async (extra) => {
    const s = await h.startRelay(['--trigger-rate-limit', '2', ...extra]);
    const send = (ip) => fetch(`http://127.0.0.1:${s.httpPort}/apps/app-id/events`, { method: 'POST',
      headers: { ...keySecret, 'X-Forwarded-For': ip }, body: JSON.stringify({ name: 'e', channel: 'c', data: '1' }) });
    const a = [await send('10.0.0.1'), await send('10.0.0.1'), await send('10.0.0.1')].map((r) => r.status);
    const b = (await send('10.0.0.2')).status;
    return { a, b };
  };
  const trusted = await run(['--trusted-proxies', '127.0.0.1']);
  assert.deepStrictEqual(trusted.a, [200, 200, 429]);
  assert.strictEqual(trusted.b, 200);  // another client behind the proxy has its own window
  const untrusted = await run([]);
  assert.deepStrictEqual(untrusted.a, [200, 200, 429]);
  assert.strictEqual(untrusted.b, 429);  // the header is ignored: all from 127.0.0.1
});
