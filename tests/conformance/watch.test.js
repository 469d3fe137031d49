// relay.v1.Channels.WatchChannelEvents through the real split binaries (relay-controlplane and two
// relay-dataplane processes), consumed by a gRPC client that is not ours (@grpc/grpc-js, the
// proto loaded from the repo): client events sent by a real pusher-js client on a data plane and
// events published through the HTTP API reach the watcher in the order the control plane accepted
// them, with their fields; filters; refusals; a watcher that does not read is cut and told how much
// it missed; watchers end when their app goes and when the control plane stops; `relayctl watch`
// and examples/grpc-watch.js (docs/grpc-api.md) run as processes.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const h = require('./lib/harness');

const ROOT = path.resolve(__dirname, '../..');
const PROTO_ROOT = path.join(ROOT, 'proto');
const relayV1 = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(PROTO_ROOT, 'relay/v1/public.proto'),
  { includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: true })).relay.v1;
const { status } = grpc;
const codeName = (code) => Object.keys(status).find((k) => status[k] === code) || String(code);
const KEY_SECRET = { 'x-relay-key': h.APP.key, 'x-relay-secret': h.APP.secret };
const BUFFER_BYTES = 65536;  // --watch-buffer-bytes: small, so that the slow watcher is cut soon
const PER_APP = 4;           // --max-watchers-per-app

let n1, n2, stub, metricsPort;
before(async () => {
  metricsPort = await h.freePort();
  [n1, n2] = await h.startCluster(2, ['--trigger-rate-limit', '0', '--watch-buffer-bytes', BUFFER_BYTES,
    '--max-watchers-per-app', PER_APP, '--metrics-port', metricsPort]);
  stub = new relayV1.Channels(`127.0.0.1:${n1.grpcPort}`, grpc.credentials.createInsecure());
});
after(async () => {
  stub.close();
  await h.stopAll();
});

function metadata(md) {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) m.set(k, v);
  return m;
}

// Opens a watch. `w.registered` resolves when its headers arrive (the control plane registered
// it); `w.ended` with its final error; `w.events` collects what it reads (nothing when `read` is
// false: the stream stays paused, as a consumer that stopped reading).
function watch(request, md = KEY_SECRET, read = true, via = stub) {
  const call = via.WatchChannelEvents({ app: h.APP.id, ...request }, metadata(md));
  const w = { call, events: [] };
  w.ended = new Promise((resolve) => call.on('error', resolve));
  w.registered = new Promise((resolve, reject) => {
    call.on('metadata', resolve);
    w.ended.then((e) => reject(new Error(`watch refused: ${codeName(e.code)} ${e.details}`)));
  });
  w.registered.catch(() => {});
  if (read) call.on('data', (e) => w.events.push(e));
  return w;
}

// A watch opened as soon as the app has a free place; resolves once registered.
async function watchOnceFree(request, md) {
  let w;
  await h.waitFor(async () => {
    w = watch(request, md);
    return w.registered.then(() => true, () => false);
  }, 10000, 'a free place');
  return w;
}

async function expectEnd(w, code, gist) {
  const err = await Promise.race([w.ended,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no end within 10 s, want ${codeName(code)}`)), 10000))]);
  assert.strictEqual(codeName(err.code), codeName(code), err.details);
  assert.match(err.details, gist);
  return err;
}

async function metric(name) {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const m = text.match(new RegExp(`^${name} (\\S+)$`, 'm'));
  return m ? Number(m[1]) : NaN;
}

function unary(method, request) {
  return new Promise((resolve, reject) => stub[method](request, metadata(KEY_SECRET),
    { deadline: Date.now() + 10000 }, (err, res) => (err ? reject(err) : resolve(res))));
}

const ctl = async (args) => {
  const r = await h.relayctl(n1, args);
  assert.strictEqual(r.code, 0, `relayctl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

test('client events from pusher-js and HTTP API events reach the watcher in order, with their fields', async () => {
  const w = watch({ prefix: 'private-' });
  await w.registered;
  const t0 = Date.now() * 1000;
  const auth = (node) => h.authOptions(node, () => undefined);
  const sender = h.client(n1, auth(n1));
  const receiver = h.client(n2, auth(n2));  // on the other node: gets what the control plane relays
  const sent = sender.subscribe('private-chat');
  const got = receiver.subscribe('private-chat');
  await Promise.all([h.once(sent, 'pusher:subscription_succeeded'), h.once(got, 'pusher:subscription_succeeded')]);

  // Each step waits for the previous one to pass through the control plane, so the order is set.
  let relayed = h.once(got, 'client-typing');
  assert.ok(sent.trigger('client-typing', { n: 1 }));
  await relayed;
  const sdk = h.sdk(n1);
  await sdk.trigger('other-chat', 'noise', { not: 'watched' });  // outside the prefix
  const order = h.once(sent, 'order');
  await sdk.trigger('private-chat', 'order', { id: 7 });
  await order;
  relayed = h.once(got, 'client-typing');
  assert.ok(sent.trigger('client-typing', { n: 2 }));
  await relayed;

  await h.waitFor(() => w.events.length >= 3, 10000, 'three events');
  const socketId = sender.connection.socket_id;
  const fields = w.events.map(({ accepted_unix_us: _, ...rest }) => rest);
  assert.deepStrictEqual(fields, [
    { channel: 'private-chat', event: 'client-typing', data: '{"n":1}', source: 'SOURCE_CLIENT', socket_id: socketId, user_id: '' },
    { channel: 'private-chat', event: 'order', data: '{"id":7}', source: 'SOURCE_API', socket_id: '', user_id: '' },
    { channel: 'private-chat', event: 'client-typing', data: '{"n":2}', source: 'SOURCE_CLIENT', socket_id: socketId, user_id: '' },
  ]);
  const times = w.events.map((e) => Number(e.accepted_unix_us));
  assert.ok(times.every((t, i) => t >= t0 && t <= Date.now() * 1000 && (i === 0 || t >= times[i - 1])), String(times));
  w.call.cancel();
});

test('exact channel names: a presence client event carries its sender user id; batches are streamed item by item', async () => {
  const w = watch({ channels: ['presence-room', 'private-batch'] });
  await w.registered;
  const { c, ch } = await h.join(n1, 'u-1', 'presence-room');
  const { ch: other } = await h.join(n2, 'u-2', 'presence-room');
  const relayed = h.once(other, 'client-hi');
  assert.ok(ch.trigger('client-hi', { text: 'hello' }));
  await relayed;
  await h.sdk(n1).triggerBatch([
    { channel: 'private-batch', name: 'b1', data: 'one' },
    { channel: 'private-unwatched', name: 'b2', data: 'two' },
    { channel: 'private-batch', name: 'b3', data: 'three' },
  ]);
  await h.waitFor(() => w.events.length >= 3, 10000, 'three events');
  assert.deepStrictEqual(w.events.map((e) => [e.channel, e.event, e.data, e.source, e.socket_id, e.user_id]), [
    ['presence-room', 'client-hi', '{"text":"hello"}', 'SOURCE_CLIENT', c.connection.socket_id, 'u-1'],
    ['private-batch', 'b1', 'one', 'SOURCE_API', '', ''],
    ['private-batch', 'b3', 'three', 'SOURCE_API', '', ''],
  ]);
  w.call.cancel();
});

test('bad credentials, a disabled app and bad filters are refused with their codes', async () => {
  await expectEnd(watch({}, {}), status.UNAUTHENTICATED, /missing credentials/);
  await expectEnd(watch({}, { ...KEY_SECRET, 'x-relay-secret': 'wrong' }), status.UNAUTHENTICATED, /invalid app key or secret/);
  await expectEnd(watch({}, { authorization: 'Bearer rlt_not-a-token' }), status.UNAUTHENTICATED, /API token/);
  await ctl(['apps', 'create', '--name', 'off', '--id', 'app-off', '--key', 'key-off', '--secret', 'secret-off']);
  await ctl(['apps', 'disable', 'app-off']);
  await expectEnd(watch({ app: 'app-off' }, { 'x-relay-key': 'key-off', 'x-relay-secret': 'secret-off' }),
    status.PERMISSION_DENIED, /disabled/);
  await expectEnd(watch({ app: 'no-such-app' }), status.NOT_FOUND, /not found/);
  await expectEnd(watch({ channels: ['bad channel'] }), status.INVALID_ARGUMENT, /invalid channel 'bad channel'/);
  await expectEnd(watch({ prefix: 'bad prefix' }), status.INVALID_ARGUMENT, /invalid prefix/);
  const many = Array.from({ length: 101 }, (_, i) => `c${i}`);
  await expectEnd(watch({ channels: many }), status.INVALID_ARGUMENT, /at most 100 channels/);
});

test('watchers per app are bounded; an app disabled or deleted ends its watchers', async () => {
  await ctl(['apps', 'create', '--name', 'w', '--id', 'app-w', '--key', 'key-w', '--secret', 'secret-w']);
  const creds = { 'x-relay-key': 'key-w', 'x-relay-secret': 'secret-w' };
  const open = [];
  for (let i = 0; i < PER_APP; i++) open.push(watch({ app: 'app-w' }, creds));
  await Promise.all(open.map((w) => w.registered));
  await expectEnd(watch({ app: 'app-w' }, creds), status.RESOURCE_EXHAUSTED, /--max-watchers-per-app/);
  open.pop().call.cancel();  // frees a place once the control plane sees the cancel
  open.push(await watchOnceFree({ app: 'app-w' }, creds));
  await ctl(['apps', 'disable', 'app-w']);
  for (const w of open) await expectEnd(w, status.PERMISSION_DENIED, /app 'app-w' is disabled/);
  await ctl(['apps', 'enable', 'app-w']);
  // Ended watchers hold their place until their streams are done (just after their status).
  const last = await watchOnceFree({ app: 'app-w' }, creds);
  await ctl(['apps', 'delete', 'app-w', '--yes']);
  await expectEnd(last, status.NOT_FOUND, /app 'app-w' was deleted/);
});

// A TCP relay to the control plane's gRPC port whose server-to-client direction can be stalled:
// a consumer on a slow network. (A paused grpc-js stream alone is no slow consumer: Node's HTTP/2
// client keeps acknowledging data into memory.)
async function stallableProxy(port) {
  const upstreams = [];
  const sockets = [];
  const server = net.createServer((client) => {
    const upstream = net.connect(port, '127.0.0.1');
    upstreams.push(upstream);
    sockets.push(client, upstream);
    client.on('data', (d) => upstream.write(d));
    upstream.on('data', (d) => client.write(d));
    for (const [a, b] of [[client, upstream], [upstream, client]]) {
      a.on('error', () => b.destroy());
      a.on('close', () => b.destroy());
    }
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: server.address().port,
    stall: () => upstreams.forEach((u) => u.pause()),
    resume: () => upstreams.forEach((u) => u.resume()),
    close: () => { sockets.forEach((s) => s.destroy()); server.close(); },
  };
}

test('a watcher that falls behind is cut with RESOURCE_EXHAUSTED saying how many events it missed', async () => {
  const proxy = await stallableProxy(n1.grpcPort);
  const slowStub = new relayV1.Channels(`127.0.0.1:${proxy.port}`, grpc.credentials.createInsecure());
  try {
    const cutBefore = await metric('relay_channel_watchers_cut_total');
    const fast = watch({ channels: ['private-flood'] });
    const slow = watch({ channels: ['private-flood'] }, KEY_SECRET, true, slowStub);
    await Promise.all([fast.registered, slow.registered]);
    proxy.stall();
    const data = 'x'.repeat(1000);  // a batch (10 KB) fits the fast watcher's buffer many times
    let sent = 0;
    // Until the control plane reports the cut: HTTP/2 flow control holds what the slow watcher
    // does not receive, then its buffer (--watch-buffer-bytes) fills.
    for (let i = 0; i < 2000 && (await metric('relay_channel_watchers_cut_total')) === cutBefore; i++) {
      await unary('TriggerBatch', { app: h.APP.id, batch: Array.from({ length: 10 }, (_, k) => ({ channel: 'private-flood', name: `e${i}.${k}`, data })) });
      sent += 10;
      // The fast watcher keeps up by construction, however slow this machine is.
      await h.waitFor(() => fast.events.length === sent, 10000, 'the fast watcher');
    }
    assert.strictEqual(await metric('relay_channel_watchers_cut_total'), cutBefore + 1);
    // The fast watcher got everything, in order.
    assert.deepStrictEqual(fast.events.map((e) => e.event), Array.from({ length: sent }, (_, n) => `e${Math.floor(n / 10)}.${n % 10}`));
    // The slow one receives what was already on its way, then learns it was cut.
    proxy.resume();
    const err = await expectEnd(slow, status.RESOURCE_EXHAUSTED, /watcher too slow: it missed \d+ events/);
    const missed = Number(err.details.match(/missed (\d+) events/)[1]);
    assert.ok(missed > 0 && slow.events.length + missed <= sent, `${slow.events.length} read, ${missed} missed, ${sent} sent`);
    assert.ok(slow.events.every((e, i) => e.event === fast.events[i].event), 'what it read is a prefix, in order');
    assert.ok((await metric('relay_channel_watch_events_total')) >= sent);
    fast.call.cancel();
  } finally {
    slowStub.close();
    proxy.close();
  }
});

test('relayctl watch --json prints one JSON object per event', async () => {
  // The earlier tests' watchers are gone (their cancels reach the control plane asynchronously).
  await h.waitFor(async () => (await metric('relay_channel_watchers')) === 0, 10000, 'no watcher open');
  const proc = spawn(path.join(h.BIN, 'relayctl'), ['--server', `127.0.0.1:${n1.grpcPort}`, '--data-dir', n1.dataDir,
    'watch', '--app', h.APP.id, '--channel', 'private-cli', '--json'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });
  try {
    await h.waitFor(async () => (await metric('relay_channel_watchers')) === 1, 10000, 'relayctl registered');
    await h.sdk(n1).trigger('private-cli', 'from-http', { a: 1 });
    await h.sdk(n1).trigger('private-other', 'not-this', {});
    await h.sdk(n1).trigger('private-cli', 'second', 'plain text');
    await h.waitFor(() => out.split('\n').length > 2, 10000, `two lines (stderr: ${err})`);
    const lines = out.trim().split('\n').map((l) => JSON.parse(l));
    assert.deepStrictEqual(lines.map(({ time, accepted_unix_us: us, ...rest }) => rest), [
      { channel: 'private-cli', event: 'from-http', data: '{"a":1}', source: 'api' },
      { channel: 'private-cli', event: 'second', data: 'plain text', source: 'api' },
    ]);
    assert.match(lines[0].time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  } finally {
    proc.kill('SIGINT');
  }
});

test('relayctl watch exits with the usual codes: 6 for a bad filter, 5 for an unknown app', async () => {
  const bad = await h.relayctl(n1, ['watch', '--app', h.APP.id, '--channel', 'bad channel']);
  assert.strictEqual(bad.code, 6, bad.stderr);
  assert.match(bad.stderr, /invalid channel/);
  const unknown = await h.relayctl(n1, ['watch', '--app', 'no-such-app']);
  assert.strictEqual(unknown.code, 5, unknown.stderr);
  const usage = await h.relayctl(n1, ['watch']);
  assert.strictEqual(usage.code, 2, usage.stderr);
});

test('docs/grpc-api.md shows examples/grpc-watch.js byte for byte', () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/grpc-api.md'), 'utf8');
  const example = fs.readFileSync(path.join(ROOT, 'examples/grpc-watch.js'), 'utf8');
  assert.ok(doc.includes('```js\n' + example + '```\n'), 'docs/grpc-api.md must contain examples/grpc-watch.js verbatim in a ```js block');
});

test('examples/grpc-watch.js (docs/grpc-api.md) prints client and API events and watches again after a control plane restart', async () => {
  const proc = spawn(process.execPath, [path.join(ROOT, 'examples/grpc-watch.js')], {
    stdio: ['ignore', 'pipe', 'pipe'],
    // `npm install @grpc/grpc-js @grpc/proto-loader` of the doc: the conformance suite's own.
    env: { ...process.env, RELAY_GRPC: `127.0.0.1:${n1.grpcPort}`, NODE_PATH: path.join(__dirname, 'node_modules') },
  });
  let out = '';
  let err = '';
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { err += d; });
  const watching = () => (out.match(/^watching$/mg) || []).length;
  try {
    await h.waitFor(() => watching() === 1, 10000, `the example watching (stderr: ${err})`);
    const c = h.client(n2, h.authOptions(n2, () => undefined));
    const ch = c.subscribe('private-orders');
    await h.once(ch, 'pusher:subscription_succeeded');
    ch.trigger('client-ping', { from: 'browser' });
    await h.waitFor(() => out.includes('client private-orders client-ping {"from":"browser"} from socket'), 10000, `the client event (${out})`);
    await h.sdk(n1).trigger('private-orders', 'order-shipped', { id: 7 });
    await h.waitFor(() => out.includes('api private-orders order-shipped {"id":7}'), 10000, `the API event (${out})`);

    // A graceful stop ends the watch with UNAVAILABLE; the example watches again once the
    // control plane is back.
    await h.stopControlPlane(n1, 'SIGTERM');
    await h.waitFor(() => /watch ended: the control plane is shutting down/.test(err), 10000, `the end (${err})`);
    await h.startControlPlane(n1);
    await h.waitFor(() => watching() === 2, 15000, `watching again (stderr: ${err})`);
    await h.sdk(n1).trigger('private-orders', 'after-restart', {});
    await h.waitFor(() => out.includes('api private-orders after-restart {}'), 10000, `the event after the restart (${out})`);
  } finally {
    proc.kill('SIGTERM');
  }
});
