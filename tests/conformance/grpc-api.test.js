// The public gRPC API (relay.v1.Channels) through the real `relay` binary with a Node gRPC client
// (@grpc/grpc-js, proto/relay/v1/public.proto loaded from the repo at test time): each way of
// proving the app in call metadata and each way it fails, the validation rules compared with the
// HTTP API's answer to the same request, the limits, and every RPC with its effect on pusher-js.
// Each refusal asserts the canonical status code and the gist of its message.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const PusherServer = require('pusher');
const h = require('./lib/harness');

const PROTO_ROOT = path.resolve(__dirname, '../../proto');
const relayV1 = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(PROTO_ROOT, 'relay/v1/public.proto'),
  { includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: true })).relay.v1;
const { status } = grpc;
const HTTP_STATUS = { [status.INVALID_ARGUMENT]: 400, [status.UNAUTHENTICATED]: 401, [status.PERMISSION_DENIED]: 403,
  [status.NOT_FOUND]: 404, [status.OUT_OF_RANGE]: 413, [status.RESOURCE_EXHAUSTED]: 429 };
const codeName = (code) => Object.keys(status).find((k) => status[k] === code) || String(code);
const KEY_SECRET = { 'x-relay-key': h.APP.key, 'x-relay-secret': h.APP.secret };

let server;  // relay without the per-address limit (the HTTP comparisons would count against it)
let api;     // a relay.v1.Channels client on its gRPC port
const stubs = [];
const succeeded = new Set();  // the RPCs that answered OK at least once
before(async () => {
  server = await h.startRelay(['--trigger-rate-limit', '0']);
  api = channelsClient(server);
});
after(async () => {
  stubs.forEach((s) => s.close());
  await h.stopAll();
});

// The unary RPCs (the server-streaming WatchChannelEvents has its own file: watch.test.js).
const UNARY = Object.keys(relayV1.Channels.service).filter((m) => !relayV1.Channels.service[m].responseStream).sort();

function channelsClient(s) {
  const stub = new relayV1.Channels(`127.0.0.1:${s.grpcPort}`, grpc.credentials.createInsecure());
  stubs.push(stub);
  return stub;
}

// One unary call with `md` as call metadata; resolves with the response, rejects with the
// grpc-js error ({code, details}).
function call(method, request, md = KEY_SECRET, stub = api) {
  const meta = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) meta.set(k, v);
  return new Promise((resolve, reject) => {
    stub[method](request, meta, { deadline: Date.now() + 10000 }, (err, res) => {
      if (err) return reject(err);
      succeeded.add(method);
      resolve(res);
    });
  });
}
const settle = (p) => p.then((res) => ({ res }), (err) => ({ err }));

// Asserts a refusal: the status code and the gist of its message. Resolves with the error.
async function expectCode(pending, code, gist) {
  const err = await pending.then((r) => assert.fail(`expected ${codeName(code)}, got OK: ${JSON.stringify(r)}`), (e) => e);
  assert.strictEqual(codeName(err.code), codeName(code), `expected ${codeName(code)}: ${err.details}`);
  assert.match(err.details, gist);
  return err;
}

// The same refusal through gRPC and the HTTP API (one implementation, docs/architecture.md): the
// code, the HTTP status it maps to, and the very same message.
async function sameRefusal(viaGrpc, viaHttp, code, gist) {
  const err = await expectCode(viaGrpc, code, gist);
  const r = await viaHttp;
  const text = await r.text();
  assert.strictEqual(r.status, HTTP_STATUS[code], `HTTP ${r.status}: ${text}`);
  assert.deepStrictEqual(JSON.parse(text), { error: err.details, code: r.status });
}
const http = (method, p, body) => fetch(`http://127.0.0.1:${server.httpPort}${p}`, {
  method, headers: { 'X-Relay-Key': h.APP.key, 'X-Relay-Secret': h.APP.secret },
  body: body === undefined ? undefined : JSON.stringify(body),
});

const ctlJson = async (args) => {
  const r = await h.relayctl(server, [...args, '--json']);
  assert.strictEqual(r.code, 0, r.stderr);
  return JSON.parse(r.stdout);
};
const credsOf = (app) => ({ 'x-relay-key': app.key, 'x-relay-secret': app.secret });

// A pusher-js client subscribed to `channel`, with every event it gets from now on.
async function subscriber(channel, opts = {}) {
  const c = h.client(server, opts);
  const ch = c.subscribe(channel);
  try {
    await h.once(ch, 'pusher:subscription_succeeded');
  } catch (e) { c.disconnect(); throw e; }
  return { c, ch, events: h.record(ch) };
}
// Asserts that `s` got `count` events in all, which it already has: a marker published now
// arrives after anything published before it, so nothing refused since was published.
async function expectNoMore(s, count) {
  await h.flush(server, s.ch.name, [s.ch]);
  assert.strictEqual(s.events.filter((e) => !e.name.startsWith('marker-')).length, count, 'nothing refused was published');
}

// pusher-js authorizers that ask Relay over gRPC, as an app's auth endpoint backed by it would.
function grpcAuthOptions(userFor) {
  const answer = (cb, pick) => (pending) => pending.then((r) => cb(null, pick(r)), (e) => cb(e, null));
  return {
    channelAuthorization: {
      customHandler: (p, cb) => {
        const presence = p.channelName.startsWith('presence-');
        answer(cb, (r) => (presence ? { auth: r.auth, channel_data: r.channel_data } : { auth: r.auth }))(
          call('AuthorizeChannel', { app: h.APP.key, socket_id: p.socketId, channel_name: p.channelName,
            channel_data: presence ? JSON.stringify(userFor()) : '' }));
      },
    },
    userAuthentication: {
      customHandler: (p, cb) => answer(cb, (r) => ({ auth: r.auth, user_data: r.user_data }))(
        call('AuthenticateUser', { app: h.APP.id, socket_id: p.socketId, user_data: JSON.stringify(userFor()) })),
    },
  };
}

test('key + secret metadata: a valid pair delivers a Trigger to pusher-js; wrong secret, unknown key, one of the two, another app\'s pair, none: UNAUTHENTICATED; unknown app: NOT_FOUND', async () => {
  const other = await ctlJson(['apps', 'create', '--name', 'grpc-other-pair']);
  const s = await subscriber('grpc-orders');
  try {
    const ev = (o = {}) => ({ app: h.APP.id, name: 'order-shipped', channels: ['grpc-orders'], data: '{"id":7}', ...o });
    assert.deepStrictEqual(await call('Trigger', ev()), { channels: {} });
    assert.deepStrictEqual(await call('Trigger', ev({ app: h.APP.key, data: '{"id":8}' })), { channels: {} });
    await h.waitFor(() => s.events.length === 2, 10000, 'both events');
    assert.deepStrictEqual(s.events, [{ name: 'order-shipped', data: { id: 7 } }, { name: 'order-shipped', data: { id: 8 } }]);
    const refused = ev({ data: '"refused"' });
    for (const [md, gist] of [
      [{ ...KEY_SECRET, 'x-relay-secret': 'wrong' }, /^invalid app key or secret$/],
      [{ ...KEY_SECRET, 'x-relay-key': 'no-such-key' }, /^invalid app key or secret$/],
      [{ 'x-relay-key': h.APP.key }, /^invalid app key or secret$/],
      [{ 'x-relay-secret': h.APP.secret }, /^invalid app key or secret$/],
      [credsOf(other), /^invalid app key or secret$/],
      [{}, /^missing credentials/],
      [{ authorization: 'Basic YTpi' }, /^missing credentials/],
    ]) {
      await expectCode(call('Trigger', refused, md), status.UNAUTHENTICATED, gist);
    }
    // The other app's pair does open the other app.
    assert.deepStrictEqual(await call('Trigger', { ...refused, app: other.id }, credsOf(other)), { channels: {} });
    // An app that does not exist is NOT_FOUND, checked before the credentials (docs/http-api.md).
    await expectCode(call('Trigger', { ...refused, app: 'no-such-app' }), status.NOT_FOUND, /^app 'no-such-app' not found$/);
    // Without any credential a stranger learns nothing, not even whether the app exists.
    await expectCode(call('Trigger', { ...refused, app: 'no-such-app' }, {}), status.UNAUTHENTICATED, /missing credentials/);
    await expectCode(call('Trigger', { ...refused, app: '' }), status.NOT_FOUND, /not found/);
    await expectNoMore(s, 2);
  } finally { s.c.disconnect(); }
});

test('bearer tokens: one made by relayctl delivers a Trigger; revoked, expired, another app\'s, unknown: UNAUTHENTICATED', async () => {
  const created = await ctlJson(['tokens', 'create', '--app', h.APP.id, '--name', 'grpc']);
  const bearer = { authorization: `Bearer ${created.secret}` };
  const s = await subscriber('grpc-bearer');
  try {
    const ev = (o = {}) => ({ app: h.APP.id, name: 'via-token', channels: ['grpc-bearer'], data: '{"n":1}', ...o });
    await call('Trigger', ev(), bearer);
    await call('Trigger', ev({ app: h.APP.key, data: '{"n":2}' }), bearer);
    await h.waitFor(() => s.events.length === 2, 10000, 'both events');
    assert.deepStrictEqual(s.events.map((e) => e.data), [{ n: 1 }, { n: 2 }]);
    const listed = (await ctlJson(['tokens', 'list', '--app', h.APP.id])).tokens.find((t) => t.id === created.token.id);
    assert.ok(Number(listed.last_used_unix_ms) > Date.now() - 60000, 'last use recorded');

    const other = await ctlJson(['apps', 'create', '--name', 'grpc-other-token']);
    const foreign = { authorization: `Bearer ${(await ctlJson(['tokens', 'create', '--app', other.id])).secret}` };
    assert.deepStrictEqual(await call('ListChannels', { app: other.id }, foreign), { channels: [] });
    const refused = ev({ data: '"refused"' });
    await expectCode(call('Trigger', refused, foreign), status.UNAUTHENTICATED, /^invalid, expired or revoked API token for this app$/);
    await expectCode(call('Trigger', refused, { authorization: 'Bearer rlt_made_up' }), status.UNAUTHENTICATED, /API token/);
    await expectCode(call('Trigger', refused, { authorization: 'Bearer ' }), status.UNAUTHENTICATED, /missing credentials/);

    assert.strictEqual((await h.relayctl(server, ['tokens', 'revoke', created.token.id])).code, 0);
    await expectCode(call('Trigger', refused, bearer), status.UNAUTHENTICATED, /invalid, expired or revoked API token/);
    // A token is judged alone: valid key + secret beside a revoked token do not rescue it.
    await expectCode(call('Trigger', refused, { ...KEY_SECRET, ...bearer }), status.UNAUTHENTICATED, /revoked API token/);

    // Expiry: a 1 s token works, then is refused (polled with a bound).
    const short = { authorization: `Bearer ${(await ctlJson(['tokens', 'create', '--app', h.APP.id, '--expires-in', '1s'])).secret}` };
    await call('GetChannel', { app: h.APP.id, channel: 'grpc-bearer' }, short);
    let last;
    await h.waitFor(async () => {
      last = await settle(call('GetChannel', { app: h.APP.id, channel: 'grpc-bearer' }, short));
      return last.err !== undefined;
    }, 5000, 'the 1 s token to expire');
    await expectCode(Promise.reject(last.err), status.UNAUTHENTICATED, /expired/);
    await expectCode(call('Trigger', refused, short), status.UNAUTHENTICATED, /expired/);

    await expectNoMore(s, 2);
  } finally { s.c.disconnect(); }
});

test('Trigger validation matches HTTP POST events: names, channels, data size (OUT_OF_RANGE = 413), socket_id, info', async () => {
  const s = await subscriber('v-0');
  try {
    const many = (n) => Array.from({ length: n }, (_, i) => `v-${i}`);
    const ev = (o = {}) => ({ name: 'e', channels: ['v-0'], data: '1', ...o });
    // The limits themselves are accepted and delivered.
    await call('Trigger', { app: h.APP.id, ...ev({ name: 'n'.repeat(200) }) });
    await call('Trigger', { app: h.APP.id, ...ev({ name: 'hundred', channels: many(100) }) });
    await call('Trigger', { app: h.APP.id, ...ev({ name: 'big', data: 'd'.repeat(10240) }) });
    await h.waitFor(() => s.events.length === 3, 10000, 'the three accepted events');
    assert.deepStrictEqual(s.events.map((e) => [e.name.length, e.name.slice(0, 7), String(e.data).length]),
      [[200, 'nnnnnnn', 1], [7, 'hundred', 1], [3, 'big', 10240]]);
    for (const [o, code, gist] of [
      [{ name: 'n'.repeat(201) }, status.INVALID_ARGUMENT, /^event name is longer than 200 characters$/],
      [{ name: 'pusher:subscribe' }, status.INVALID_ARGUMENT, /^event names starting with 'pusher:' are reserved$/],
      [{ name: 'pusher_internal:x' }, status.INVALID_ARGUMENT, /reserved/],
      [{ name: '' }, status.INVALID_ARGUMENT, /^event name is required$/],
      [{ channels: many(101) }, status.INVALID_ARGUMENT, /^at most 100 channels per event$/],
      [{ channels: [] }, status.INVALID_ARGUMENT, /^at least one channel is required$/],
      [{ channels: ['bad name'] }, status.INVALID_ARGUMENT, /^invalid channel 'bad name'/],
      [{ channels: ['v-0', 'bad*name'] }, status.INVALID_ARGUMENT, /^invalid channel 'bad\*name'/],
      [{ channels: ['x'.repeat(201)] }, status.INVALID_ARGUMENT, /longer than/],
      [{ channels: ['private-encrypted-a', 'private-encrypted-b'] }, status.INVALID_ARGUMENT, /exactly one channel/],
      [{ data: 'd'.repeat(10241) }, status.OUT_OF_RANGE, /^event data is 10241 bytes; the limit is 10240$/],
      [{ socket_id: 'abc' }, status.INVALID_ARGUMENT, /^invalid socket_id 'abc'/],
      [{ info: 'bogus' }, status.INVALID_ARGUMENT, /^unsupported info attribute 'bogus'/],
      [{ info: 'subscription_count,cache2' }, status.INVALID_ARGUMENT, /unsupported info attribute 'cache2'/],
    ]) {
      const body = ev(o);
      await sameRefusal(call('Trigger', { app: h.APP.id, ...body }), http('POST', '/apps/app-id/events', body), code, gist);
    }
    await expectNoMore(s, 3);
  } finally { s.c.disconnect(); }
});

test('TriggerBatch validation matches HTTP POST batch_events: 10 items delivered in order, 11 or 0 refused, one bad item refuses all', async () => {
  const s = await subscriber('grpc-batch');
  try {
    const item = (i, o = {}) => ({ channel: 'grpc-batch', name: `b${i}`, data: String(i), ...o });
    const items = (n) => Array.from({ length: n }, (_, i) => item(i));
    assert.deepStrictEqual(await call('TriggerBatch', { app: h.APP.key, batch: items(10) }), { batch: [], has_info: false });
    await h.waitFor(() => s.events.length === 10, 10000, 'ten batch events');
    assert.deepStrictEqual(s.events, items(10).map((i) => ({ name: i.name, data: Number(i.data) })));
    const refuse = (batch, code, gist) => sameRefusal(call('TriggerBatch', { app: h.APP.id, batch }),
      http('POST', '/apps/app-id/batch_events', { batch }), code, gist);
    await refuse(items(11), status.INVALID_ARGUMENT, /^Cannot batch-send more than 10 messages at once$/);
    await refuse([], status.INVALID_ARGUMENT, /^batch is empty$/);
    for (const [bad, code, gist] of [
      [{ name: 'pusher:x' }, status.INVALID_ARGUMENT, /reserved/],
      [{ name: 'n'.repeat(201) }, status.INVALID_ARGUMENT, /longer than 200/],
      [{ channel: 'bad name' }, status.INVALID_ARGUMENT, /invalid channel 'bad name'/],
      [{ data: 'd'.repeat(10241) }, status.OUT_OF_RANGE, /the limit is 10240/],
      [{ socket_id: '1' }, status.INVALID_ARGUMENT, /invalid socket_id/],
      [{ info: 'nope' }, status.INVALID_ARGUMENT, /unsupported info attribute 'nope'/],
    ]) {
      await refuse([item('never'), item(99, bad)], code, gist);
    }
    await expectNoMore(s, 10);
  } finally { s.c.disconnect(); }
});

test('channel queries: ListChannels, GetChannel (subscription_count, user_count, cache), ListPresenceUsers, info on triggers; their INVALID_ARGUMENTs match HTTP', async () => {
  // pusher-js subscriptions signed through gRPC AuthorizeChannel (presence: user_info kept).
  const ann = h.client(server, grpcAuthOptions(() => ({ user_id: 'ann', user_info: { n: 'A' } })));
  const ben = h.client(server, grpcAuthOptions(() => ({ user_id: 'ben', user_info: { n: 'B' } })));
  try {
    const subs = [ann.subscribe('presence-gq'), ben.subscribe('presence-gq'), ann.subscribe('gq-pub')];
    const [{ data: roster }] = await Promise.all(subs.map((ch) => h.once(ch, 'pusher:subscription_succeeded')));
    assert.strictEqual(roster.me.id, 'ann');
    const info = (name, o = {}) => ({ name, occupied: true, subscription_count: 0, user_count: 0, cache: null, ...o });
    const get = (channel, attrs) => call('GetChannel', { app: h.APP.id, channel, info: attrs });
    // The cluster view learns subscriptions asynchronously: poll, bounded.
    await h.waitFor(async () => (await get('presence-gq', 'subscription_count')).subscription_count === 2, 10000, 'both presence subscriptions');
    assert.deepStrictEqual(await get('presence-gq', 'user_count,subscription_count'), info('presence-gq', { subscription_count: 2, user_count: 2 }));
    assert.deepStrictEqual(await get('gq-pub', 'subscription_count'), info('gq-pub', { subscription_count: 1 }));
    assert.deepStrictEqual(await get('gq-pub', ''), info('gq-pub'));
    assert.deepStrictEqual(await get('gq-nobody', 'subscription_count'), info('gq-nobody', { occupied: false }));
    assert.deepStrictEqual(await call('ListChannels', { app: h.APP.key, filter_by_prefix: 'presence-gq', info: 'user_count,subscription_count' }),
      { channels: [info('presence-gq', { subscription_count: 2, user_count: 2 })] });
    assert.deepStrictEqual(await call('ListChannels', { app: h.APP.id, filter_by_prefix: 'gq-' }), { channels: [info('gq-pub')] });
    const all = (await call('ListChannels', { app: h.APP.id, info: 'subscription_count' })).channels;
    assert.deepStrictEqual(all.filter((c) => ['gq-pub', 'presence-gq'].includes(c.name)),
      [info('gq-pub', { subscription_count: 1 }), info('presence-gq', { subscription_count: 2 })]);
    assert.deepStrictEqual(all.map((c) => c.name), all.map((c) => c.name).sort(), 'sorted by name');
    assert.deepStrictEqual(await call('ListPresenceUsers', { app: h.APP.id, channel: 'presence-gq' }),
      { users: [{ user_id: 'ann', user_info_json: '{"n":"A"}' }, { user_id: 'ben', user_info_json: '{"n":"B"}' }] });
    assert.deepStrictEqual(await call('ListPresenceUsers', { app: h.APP.id, channel: 'presence-nobody' }), { users: [] });
    // info on Trigger: per distinct target channel, attributes that do not apply left out.
    const t = await call('Trigger', { app: h.APP.id, name: 'e', channels: ['gq-pub', 'presence-gq', 'gq-pub', 'gq-empty'], data: '1',
      info: 'subscription_count,user_count' });
    assert.deepStrictEqual(t, { channels: { 'gq-pub': info('gq-pub', { subscription_count: 1 }),
      'presence-gq': info('presence-gq', { subscription_count: 2, user_count: 2 }), 'gq-empty': info('gq-empty', { occupied: false }) } });
    // info on TriggerBatch: index i describes item i; items without info are empty.
    const b = await call('TriggerBatch', { app: h.APP.id, batch: [
      { channel: 'presence-gq', name: 'a', data: '1', info: 'user_count' }, { channel: 'gq-pub', name: 'b', data: '2' }] });
    assert.deepStrictEqual(b, { has_info: true, batch: [info('presence-gq', { user_count: 2 }),
      { name: '', occupied: false, subscription_count: 0, user_count: 0, cache: null }] });
    // A cache channel: nothing cached, then the last event with its time to live.
    assert.deepStrictEqual(await get('cache-gq', 'cache'), info('cache-gq', { occupied: false }));
    await call('Trigger', { app: h.APP.id, name: 'tick', channels: ['cache-gq'], data: '{"p":1}' });
    const cached = (await get('cache-gq', 'cache')).cache;
    assert.deepStrictEqual({ event: cached.event, data: cached.data }, { event: 'tick', data: '{"p":1}' });
    assert.ok(cached.ttl_seconds > 1700 && cached.ttl_seconds <= 1800, `ttl ${cached.ttl_seconds}`);
    assert.ok(Math.abs(Number(cached.expires_unix_ms) - (Date.now() + cached.ttl_seconds * 1000)) < 2000, `expires ${cached.expires_unix_ms}`);
    // The refusals, each with the HTTP API's status and message.
    // Each makes its two requests only when called (a refusal left unawaited would be unhandled).
    const list = (q) => () => [call('ListChannels', { app: h.APP.id, ...q }), http('GET', `/apps/app-id/channels?${new URLSearchParams(q)}`)];
    const one = (channel, attrs) => () => [get(channel, attrs),
      http('GET', `/apps/app-id/channels/${encodeURIComponent(channel)}${attrs ? `?info=${attrs}` : ''}`)];
    const users = (channel) => () => [call('ListPresenceUsers', { app: h.APP.id, channel }),
      http('GET', `/apps/app-id/channels/${encodeURIComponent(channel)}/users`)];
    for (const [requests, gist] of [
      [list({ info: 'members' }), /^unsupported info attribute 'members'/],
      [list({ info: 'user_count' }), /^user_count is only available with filter_by_prefix=presence-$/],
      [list({ info: 'cache' }), /^cache is not available when listing$/],
      [one('gq-pub', 'user_count'), /^user_count is only available for presence channels$/],
      [one('gq-pub', 'cache'), /^cache is only available for cache channels$/],
      [one('gq-pub', 'bogus'), /^unsupported info attribute 'bogus'/],
      [one('bad name', ''), /^invalid channel 'bad name'/],
      [users('gq-pub'), /^users are only available for presence channels$/],
      [users('private-gq'), /^users are only available for presence channels$/],
      [users('bad name'), /^invalid channel 'bad name'/],
    ]) {
      await sameRefusal(...requests(), status.INVALID_ARGUMENT, gist);
    }
  } finally { ann.disconnect(); ben.disconnect(); }
});

test('AuthorizeChannel and AuthenticateUser sign what the pusher SDK signs and pusher-js accepts; their refusals match HTTP POST auth', async () => {
  const signer = h.sdk(server);
  const priv = await call('AuthorizeChannel', { app: h.APP.id, socket_id: '123.456', channel_name: 'private-orders' });
  assert.deepStrictEqual(priv, { auth: signer.authorizeChannel('123.456', 'private-orders').auth, channel_data: '' });
  const cd = '{"user_id":"u-1","user_info":{"name":"Ada"}}';
  const pres = await call('AuthorizeChannel', { app: h.APP.key, socket_id: '123.456', channel_name: 'presence-room', channel_data: cd });
  const expected = signer.authorizeChannel('123.456', 'presence-room', JSON.parse(cd));
  assert.deepStrictEqual(pres, { auth: expected.auth, channel_data: cd });
  assert.strictEqual(expected.channel_data, cd, 'the SDK signed the same text');
  const ud = '{"id":"u-1","user_info":{"name":"Ada"}}';
  assert.deepStrictEqual(await call('AuthenticateUser', { app: h.APP.id, socket_id: '123.456', user_data: ud }),
    { auth: signer.authenticateUser('123.456', JSON.parse(ud)).auth, user_data: ud });
  // pusher-js subscribes and signs in with them, and gets what is published to the private channel.
  const c = h.client(server, grpcAuthOptions(() => ({ user_id: 'ada', id: 'ada', user_info: { name: 'Ada' } })));
  try {
    const ch = c.subscribe('private-grpc-auth');
    await h.once(ch, 'pusher:subscription_succeeded');
    const p = c.subscribe('presence-grpc-auth');
    const { data: members } = await h.once(p, 'pusher:subscription_succeeded');
    assert.deepStrictEqual([members.me.id, members.me.info], ['ada', { name: 'Ada' }]);
    c.signin();  // already connected
    await c.user.signinDonePromise;
    assert.strictEqual(c.user.user_data.id, 'ada');
    const secret = h.once(ch, 'secret');
    await call('Trigger', { app: h.APP.id, name: 'secret', channels: ['private-grpc-auth'], data: '"ok"' });
    assert.strictEqual((await secret).data, 'ok');
  } finally { c.disconnect(); }
  const auth = (req, body = req) => () => [call(req.user_data === undefined ? 'AuthorizeChannel' : 'AuthenticateUser', { app: h.APP.id, ...req }),
    http('POST', '/apps/app-id/auth', body)];
  for (const [requests, gist] of [
    [auth({ socket_id: '1.2', channel_name: 'public-ch' }), /^only private and presence channels need authorization$/],
    [auth({ socket_id: '1.2', channel_name: 'presence-x' }), /channel_data, a JSON object with a user_id/],
    [auth({ socket_id: '1.2', channel_name: 'presence-x', channel_data: '{"name":"no id"}' }), /user_id/],
    [auth({ socket_id: 'nope', channel_name: 'private-x' }), /^invalid socket_id/],
    [auth({ socket_id: '1.2', channel_name: 'bad name' }), /^invalid channel 'bad name'/],
    [auth({ socket_id: '1.2', channel_name: 'private-encrypted-x' }), /private-encrypted- channels must be authorized by the app's own backend/],
    [auth({ socket_id: '1.2', user_data: '{"name":"no id"}' }), /^user_data must be a JSON object with a non-empty string id$/],
    [auth({ socket_id: '1.2', user_data: '{"id":""}' }), /non-empty string id/],
    [auth({ socket_id: 'x', user_data: '{"id":"a"}' }), /^invalid socket_id/],
  ]) {
    await sameRefusal(...requests(), status.INVALID_ARGUMENT, gist);
  }
});

test('SendToUser reaches every connection signed in as the user (socket_id excluded); TerminateUserConnections closes them with 4009 and no other', async () => {
  const user = (id) => h.client(server, grpcAuthOptions(() => ({ id })));
  const clients = [user('u-grpc'), user('u-grpc'), user('u-else')];
  try {
    await Promise.all(clients.map(h.signIn));
    await Promise.all(clients.map(h.barrier));  // the control plane knows every sign-in
    const notes = clients.map(() => []);
    clients.forEach((c, i) => c.user.bind('note', (d) => notes[i].push(d)));
    const send = (userId, data, o = {}) => call('SendToUser', { app: h.APP.id, user_id: userId, name: 'note', data, ...o });
    assert.deepStrictEqual(await send('u-grpc', '{"n":1}'), {});
    await send('u-grpc', '{"n":2}', { socket_id: clients[0].connection.socket_id });
    await send('u-grpc', '{"n":3}');
    await send('u-else', '{"n":4}');
    await h.waitFor(() => notes[0].length === 2 && notes[1].length === 3 && notes[2].length === 1, 10000, 'the notes');
    assert.deepStrictEqual(notes, [[{ n: 1 }, { n: 3 }], [{ n: 1 }, { n: 2 }, { n: 3 }], [{ n: 4 }]]);
    await expectCode(send('', '1'), status.INVALID_ARGUMENT, /^user_id is required$/);
    await expectCode(send('u-grpc', '1', { name: 'pusher:x' }), status.INVALID_ARGUMENT, /reserved/);
    await expectCode(send('u-grpc', 'd'.repeat(10241)), status.OUT_OF_RANGE, /10241 bytes; the limit is 10240/);
    await expectCode(send('u-grpc', '1', { socket_id: 'x' }), status.INVALID_ARGUMENT, /invalid socket_id 'x'/);

    const closed = clients.slice(0, 2).map((c) => h.once(c.connection, 'error'));
    const kept = h.states(clients[2]);
    assert.deepStrictEqual(await call('TerminateUserConnections', { app: h.APP.key, user_id: 'u-grpc' }), {});
    for (const e of await Promise.all(closed)) assert.strictEqual(e.data.data.code, 4009);
    assert.deepStrictEqual(await call('TerminateUserConnections', { app: h.APP.id, user_id: 'nobody' }), {});
    await expectCode(call('TerminateUserConnections', { app: h.APP.id, user_id: '' }), status.INVALID_ARGUMENT, /^user_id is required$/);
    await send('u-else', '{"n":5}');
    await h.waitFor(() => notes[2].length === 2, 10000, 'u-else still reachable');
    assert.deepStrictEqual(notes[2], [{ n: 4 }, { n: 5 }]);
    assert.deepStrictEqual(kept, []);
    assert.strictEqual(notes[0].length + notes[1].length, 5, 'no refused note was sent');
  } finally { clients.forEach((c) => c.disconnect()); }
});

test('a disabled app: every RPC is PERMISSION_DENIED (before the credentials are checked; a call without any is UNAUTHENTICATED); enabled again, it works', async () => {
  const app = await ctlJson(['apps', 'create', '--name', 'grpc-switched-off']);
  const creds = credsOf(app);
  const requests = {
    Trigger: { name: 'e', channels: ['c'], data: '1' },
    TriggerBatch: { batch: [{ channel: 'c', name: 'e', data: '1' }] },
    ListChannels: {},
    GetChannel: { channel: 'c' },
    ListPresenceUsers: { channel: 'presence-c' },
    SendToUser: { user_id: 'u', name: 'e', data: '1' },
    TerminateUserConnections: { user_id: 'u' },
    AuthorizeChannel: { socket_id: '1.2', channel_name: 'private-c' },
    AuthenticateUser: { socket_id: '1.2', user_data: '{"id":"u"}' },
  };
  assert.deepStrictEqual(Object.keys(requests).sort(), UNARY, 'every unary RPC of the service');
  await call('Trigger', { app: app.id, ...requests.Trigger }, creds);
  assert.strictEqual((await h.relayctl(server, ['apps', 'disable', app.id])).code, 0);
  for (const [method, req] of Object.entries(requests)) {
    await expectCode(call(method, { app: app.id, ...req }, creds), status.PERMISSION_DENIED, new RegExp(`^app '${app.id}' is disabled$`));
  }
  // With any credential, wrong or not, the app's state comes first; with none at all, nothing is
  // looked up.
  await expectCode(call('Trigger', { app: app.key, ...requests.Trigger }, { 'x-relay-key': 'k', 'x-relay-secret': 'wrong' }),
    status.PERMISSION_DENIED, /is disabled/);
  await expectCode(call('Trigger', { app: app.key, ...requests.Trigger }, {}), status.UNAUTHENTICATED, /missing credentials/);
  await sameRefusal(call('GetChannel', { app: app.key, channel: 'c' }, creds),
    fetch(`http://127.0.0.1:${server.httpPort}/apps/${app.key}/channels/c`, { headers: { 'X-Relay-Key': app.key, 'X-Relay-Secret': app.secret } }),
    status.PERMISSION_DENIED, /disabled/);
  assert.strictEqual((await h.relayctl(server, ['apps', 'enable', app.id])).code, 0);
  for (const [method, req] of Object.entries(requests)) await call(method, { app: app.id, ...req }, creds);
});

test('per-app backend event rate: RESOURCE_EXHAUSTED when over it for now; PERMISSION_DENIED for a request over the whole limit', async () => {
  const app = await ctlJson(['apps', 'create', '--name', 'grpc-rate']);
  assert.strictEqual((await h.relayctl(server, ['apps', 'update', app.id, '--max-backend-events-per-second', '3'])).code, 0);
  const creds = credsOf(app);
  const trigger = (channels) => call('Trigger', { app: app.id, name: 'e', channels, data: '1' }, creds);
  const over = new RegExp(`^this request carries 4 messages, more than app '${app.id}' may send in a second \\(3\\); it can never be accepted$`);
  await expectCode(trigger(['a', 'b', 'c', 'd']), status.PERMISSION_DENIED, over);
  await expectCode(call('TriggerBatch', { app: app.id, batch: ['a', 'b', 'c', 'd'].map((channel) => ({ channel, name: 'e', data: '1' })) }, creds),
    status.PERMISSION_DENIED, over);
  // Two messages a call: by the second call within one second the app is over its rate.
  let last;
  await h.waitFor(async () => { last = await settle(trigger(['a', 'b'])); return last.err !== undefined; }, 5000, 'the rate to be exceeded');
  await expectCode(Promise.reject(last.err), status.RESOURCE_EXHAUSTED, new RegExp(`^app '${app.id}' is over its limit of 3 backend events per second$`));
});

test('daily quota: RESOURCE_EXHAUSTED when used up (shared with HTTP), PERMISSION_DENIED over the whole quota, refused requests not counted', async () => {
  // The day is a UTC day: do not start in its last seconds.
  await h.waitFor(() => (Date.now() / 1000) % 86400 < 86400 - 30, 31000, 'not just before 00:00 UTC');
  const app = await ctlJson(['apps', 'create', '--name', 'grpc-quota']);
  assert.strictEqual((await h.relayctl(server, ['apps', 'update', app.id, '--max-daily-messages', '4'])).code, 0);
  const creds = credsOf(app);
  const trigger = (channels, o = {}) => call('Trigger', { app: app.id, name: 'e', channels, data: '1', ...o }, creds);
  await expectCode(trigger(['a', 'b', 'c', 'd', 'e']), status.PERMISSION_DENIED,
    new RegExp(`^this request carries 5 messages, more than the daily quota of app '${app.id}' \\(4\\); it can never be accepted$`));
  await expectCode(trigger(['a', 'b'], { name: 'pusher:x' }), status.INVALID_ARGUMENT, /reserved/);
  await expectCode(trigger(['a', 'b'], { data: 'd'.repeat(10241) }), status.OUT_OF_RANGE, /limit is 10240/);
  // One message per distinct channel, per batch item, per send-to-user.
  await trigger(['a', 'b', 'a']);                                                                     // 2
  await call('TriggerBatch', { app: app.key, batch: [{ channel: 'a', name: 'e', data: '1' }] }, creds);  // 3
  await call('SendToUser', { app: app.id, user_id: 'u', name: 'e', data: '1' }, creds);                   // 4
  const used = new RegExp(`^app '${app.id}' has used 4 of its daily quota of 4 messages; it resets at 00:00 UTC$`);
  await expectCode(trigger(['a']), status.RESOURCE_EXHAUSTED, used);
  await expectCode(call('TriggerBatch', { app: app.id, batch: [{ channel: 'a', name: 'e', data: '1' }] }, creds), status.RESOURCE_EXHAUSTED, used);
  await expectCode(call('SendToUser', { app: app.id, user_id: 'u', name: 'e', data: '1' }, creds), status.RESOURCE_EXHAUSTED, used);
  // Queries are not messages.
  await call('ListChannels', { app: app.id }, creds);
  // One count for both front doors: the HTTP API sees the same day's usage, and the SDK the same message.
  const sdk = new PusherServer({ appId: app.id, key: app.key, secret: app.secret, host: '127.0.0.1', port: String(server.httpPort), useTLS: false });
  const e = await sdk.trigger('a', 'e', {}).then(() => assert.fail('expected 429'), (x) => x);
  assert.strictEqual(e.status, 429);
  assert.match(JSON.parse(e.body).error, used);
});

test('every unary RPC of relay.v1.Channels answered OK at least once above', () => {
  assert.deepStrictEqual([...succeeded].sort(), UNARY);
});
