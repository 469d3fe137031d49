// Hostile WebSocket clients against the real `relay` binary: floods that used to grow the
// process without bound (pings answered by a queue of pongs, subscriptions without a cap),
// connection caps, and protocol details (close reasons that are not UTF-8). Each attack is
// bounded in bytes and time; afterwards the process is alive, its RSS stayed under a stated
// bound, and a normal pusher-js client still subscribes and receives.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const h = require('./lib/harness');
const { rssBytes, rssBound, assertAlive, assertServes } = require('./lib/hostile');

const MB = 1024 * 1024;

let server;
before(async () => { server = await h.startRelay(); });
after(h.stopAll);

// A masked client frame.
function frame(opcode, payload = Buffer.alloc(0)) {
  const body = Buffer.from(payload);
  const n = body.length;
  const head = n < 126 ? Buffer.from([0x80 | opcode, 0x80 | n])
    : n <= 0xffff ? Buffer.from([0x80 | opcode, 0x80 | 126, n >> 8, n & 0xff])
      : (() => { const b = Buffer.alloc(10); b[0] = 0x80 | opcode; b[1] = 0x80 | 127; b.writeBigUInt64BE(BigInt(n), 2); return b; })();
  const mask = crypto.randomBytes(4);
  for (let i = 0; i < n; i++) body[i] ^= mask[i & 3];
  return Buffer.concat([head, mask, body]);
}

const text = (obj) => frame(0x1, JSON.stringify(obj));

// A WebSocket client speaking the framing by hand. Resolves once the 101 arrived; `frames`
// collects { opcode, payload } the server sends (and `events` the text ones, parsed) (unless reading is paused), `ended` is set when
// the TCP connection ends.
function rawWs(port, path = `/app/${h.APP.key}?protocol=7`) {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, '127.0.0.1');
    const c = { sock, frames: [], events: [], buf: Buffer.alloc(0), upgraded: false };
    sock.on('close', () => { c.ended = true; });
    const timer = setTimeout(() => { sock.destroy(); reject(new Error('no 101 within 10 s')); }, 10000);
    sock.on('error', () => {});
    sock.on('connect', () => {
      sock.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n` +
        `Connection: Upgrade\r\nSec-WebSocket-Key: ${crypto.randomBytes(16).toString('base64')}\r\n` +
        'Sec-WebSocket-Version: 13\r\n\r\n');
    });
    sock.on('data', (d) => {
      c.buf = Buffer.concat([c.buf, d]);
      if (!c.upgraded) {
        const end = c.buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        const head = c.buf.subarray(0, end).toString();
        c.buf = c.buf.subarray(end + 4);
        clearTimeout(timer);
        if (!head.startsWith('HTTP/1.1 101')) { sock.destroy(); return reject(new Error(head)); }
        c.upgraded = true;
        resolve(c);
      }
      for (;;) {
        if (c.buf.length < 2) return;
        let n = c.buf[1] & 0x7f, at = 2;
        if (n === 126) { if (c.buf.length < 4) return; n = c.buf.readUInt16BE(2); at = 4; }
        if (n === 127) { if (c.buf.length < 10) return; n = Number(c.buf.readBigUInt64BE(2)); at = 10; }
        if (c.buf.length < at + n) return;
        const f = { opcode: c.buf[0] & 0x0f, payload: c.buf.subarray(at, at + n) };
        c.frames.push(f);
        if (f.opcode === 1) c.events.push(JSON.parse(f.payload.toString()));
        c.buf = c.buf.subarray(at + n);
      }
    });
  });
}

// The Pusher events among the frames received so far.
const events = (c) => c.events;

// A rawWs() that got pusher:connection_established (a node that has just started refuses with
// 4100 until it knows the apps: then it tries again, a bounded number of times).
async function established(port) {
  for (let i = 0; i < 50; i++) {
    const c = await rawWs(port);
    await h.waitFor(() => events(c).length > 0, 5000, 'the first event');
    if (events(c)[0].event === 'pusher:connection_established') return c;
    c.sock.destroy();
    await h.waitFor(() => c.ended, 5000, 'the refused connection gone');
  }
  throw new Error('no connection established');
}

// Writes `buf` and resolves once the kernel took all of it.
function writeAll(sock, buf) {
  return new Promise((resolve, reject) => sock.write(buf, (e) => (e ? reject(e) : resolve())));
}

// Resolves once `channel` is occupied as seen by the HTTP API: the server handled every frame
// the connection sent before its subscribe.
async function occupied(channel, timeoutMs) {
  await h.waitFor(async () => {
    const r = await h.sdk(server).get({ path: `/channels/${channel}` });
    return (await r.json()).occupied === true;
  }, timeoutMs, `${channel} occupied`);
}

test('ping flood from a client that never reads: pongs coalesce, RSS stays bounded', async () => {
  const c = await established(server.wsPort);
  try {
    c.sock.pause();  // never reads again: every pong stays queued on the server
    const before = rssBytes(server.proc.child.pid);
    // 4 million empty pings (24 MB); a pong queued per ping grew this by hundreds of MB.
    const ping = frame(0x9);
    const chunk = Buffer.alloc(ping.length * 100000);
    for (let i = 0; i < 100000; i++) ping.copy(chunk, i * ping.length);
    let peak = before;
    for (let i = 0; i < 40; i++) {
      await writeAll(c.sock, chunk);
      peak = Math.max(peak, rssBytes(server.proc.child.pid));
    }
    await writeAll(c.sock, text({ event: 'pusher:subscribe', data: { channel: 'ping-flood-done' } }));
    await occupied('ping-flood-done', 60000);
    peak = Math.max(peak, rssBytes(server.proc.child.pid));
    assertAlive(server.proc, 'relay');
    assert.ok(peak - before < rssBound(64), `RSS grew by ${((peak - before) / MB).toFixed(0)} MB`);
    await assertServes(server);
  } finally { c.sock.destroy(); }
});

test('subscription flood: one connection gets at most 1000 channels, the rest LimitReached', async () => {
  const c = await established(server.wsPort);
  try {
    const before = rssBytes(server.proc.child.pid);
    // 1,000,000 took 2.2 GB without a cap. Sent in batches of 2000, each once the previous one
    // is answered: the answers stay within the write queue's bounds, so the server has no
    // reason to cut the connection as a slow consumer.
    const count = 200000, batch = 2000;
    const answered = () => events(c).length - 1;  // after connection_established
    for (let sent = 0; sent < count; sent += batch) {
      const parts = [];
      for (let i = sent; i < sent + batch; i++) parts.push(text({ event: 'pusher:subscribe', data: { channel: `flood-${i}` } }));
      await writeAll(c.sock, Buffer.concat(parts));
      await h.waitFor(() => answered() >= sent + batch, 10000, `answers to ${sent + batch} subscribes`);
    }
    const rss = rssBytes(server.proc.child.pid);
    const evs = events(c);
    const ok = evs.filter((e) => e.event === 'pusher_internal:subscription_succeeded');
    const refused = evs.filter((e) => e.event === 'pusher:subscription_error');
    assert.strictEqual(ok.length, 1000);
    assert.strictEqual(refused.length, count - 1000);
    for (const e of refused) {
      assert.strictEqual(e.data.type, 'LimitReached');
      assert.ok(e.data.status === 4100 || e.data.status === 4301, JSON.stringify(e));
    }
    assertAlive(server.proc, 'relay');
    assert.ok(rss - before < rssBound(128), `RSS grew by ${((rss - before) / MB).toFixed(0)} MB`);
    assert.ok(!c.ended, 'the connection stays open');
    await assertServes(server);
  } finally { c.sock.destroy(); }
});

test('pusher-js gets LimitReached on the channel over the cap and keeps its other channels', async () => {
  const small = await h.startRelay(['--max-subscriptions-per-connection', '2']);
  const c = h.client(small);
  try {
    const a = c.subscribe('cap-a');
    const b = c.subscribe('cap-b');
    await Promise.all([h.once(a, 'pusher:subscription_succeeded'), h.once(b, 'pusher:subscription_succeeded')]);
    const over = c.subscribe('cap-c');
    const { data } = await h.once(over, 'pusher:subscription_error');
    assert.strictEqual(data.type, 'LimitReached');
    assert.strictEqual(data.status, 4100);
    assert.strictEqual(c.connection.state, 'connected');
    const got = h.once(a, 'still');
    await h.sdk(small).trigger('cap-a', 'still', { ok: 1 });
    assert.deepStrictEqual((await got).data, { ok: 1 });
  } finally { c.disconnect(); }
});

test('--max-connections-per-ip refuses the next connection with 4100', async () => {
  const capped = await h.startRelay(['--max-connections-per-ip', '2']);
  const held = [await established(capped.wsPort), await established(capped.wsPort)];
  try {
    const third = await rawWs(capped.wsPort);
    await h.waitFor(() => third.frames.some((f) => f.opcode === 8), 5000, 'a close frame');
    const [err] = events(third);
    assert.strictEqual(err.event, 'pusher:error');
    assert.strictEqual(err.data.code, 4100);
    const close = third.frames.find((f) => f.opcode === 8);
    assert.strictEqual(close.payload.readUInt16BE(0), 4100);
  } finally { for (const c of held) c.sock.destroy(); }
  // Their slots are free again once they are gone.
  await h.waitFor(async () => {
    const c = await rawWs(capped.wsPort);
    await h.waitFor(() => events(c).length > 0, 5000).catch(() => {});
    const ok = events(c)[0]?.event === 'pusher:connection_established';
    c.sock.destroy();
    return ok;
  }, 10000, 'a connection after the others left');
});

test('a close frame whose reason is not UTF-8 is answered with 1007', async () => {
  const c = await established(server.wsPort);
  try {
    await writeAll(c.sock, frame(0x8, Buffer.from([0x03, 0xe8, 0xc3, 0x28])));
    await h.waitFor(() => c.frames.some((f) => f.opcode === 8), 5000, 'a close frame');
    assert.strictEqual(c.frames.find((f) => f.opcode === 8).payload.readUInt16BE(0), 1007);
  } finally { c.sock.destroy(); }
});

// relay started under `prlimit --nofile=N:N` (its own process, stopped by the caller).
async function startRelayWithFileLimit(nofile) {
  const [port, grpcPort] = [await h.freePort(), await h.freePort()];
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-hostile-'));
  const bin = path.join(process.env.RELAY_BIN_DIR || path.resolve(__dirname, '../../build/bin'), 'relay');
  const child = spawn('prlimit', [`--nofile=${nofile}:${nofile}`, bin, '--port', port, '--grpc-port',
    grpcPort, '--data-dir', dataDir].map(String), { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  child.stdout.on('data', (d) => { log += d; });
  child.stderr.on('data', (d) => { log += d; });
  await h.waitFor(() => log.includes('relay ready') || child.exitCode !== null, 15000, 'relay ready');
  assert.ok(log.includes('relay ready'), log);
  return { wsPort: port, httpPort: port, grpcPort, dataDir, proc: { child } };
}

test('without --capacity, connections stop at the file limit minus a reserve, with 4100', async () => {
  // 300 descriptors: the default capacity keeps 64 of them for gRPC, HTTP, webhooks and SQLite.
  const limited = await startRelayWithFileLimit(300);
  const held = [];
  try {
    for (let i = 0; i < 236; i++) {
      held.push(await established(limited.wsPort));
    }
    const over = await rawWs(limited.wsPort);
    held.push(over);
    await h.waitFor(() => events(over).length > 0, 5000, 'the refusal');
    assert.strictEqual(events(over)[0].event, 'pusher:error');
    assert.strictEqual(events(over)[0].data.code, 4100);
    assertAlive(limited.proc, 'relay');
    // The HTTP API still has descriptors to work with while the node is full.
    await h.sdk(limited).trigger('full-node', 'e', {});
    for (const c of held) c.sock.destroy();
    held.length = 0;
    await assertServes(limited);
  } finally {
    for (const c of held) c.sock.destroy();
    limited.proc.child.kill('SIGKILL');
  }
});
