// relay.v1.Channels.WatchLifecycleEvents through the real split binaries, consumed by a gRPC
// client that is not ours (@grpc/grpc-js): real pusher-js clients join and leave a presence
// channel and send client events; a consumer reads the lifecycle events with their cursors,
// disconnects, more happens, and resuming with its last cursor it gets exactly what it missed;
// across a control plane restart (SIGKILL) every event committed before is replayed with the same
// cursor, none twice; a cursor pruned by a tiny retention is refused with OUT_OF_RANGE, never a
// gap; `relayctl watch --lifecycle --since` and examples/grpc-lifecycle.js run as processes.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const { spawn } = require('node:child_process');
const fs = require('node:fs');
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

let n1, pruning, metricsPort;
before(async () => {
  [n1] = await h.startCluster(1, ['--trigger-rate-limit', '0']);
  metricsPort = await h.freePort();
  // A control plane that keeps lifecycle events one second only.
  pruning = await h.startSplit(['--lifecycle-retention-seconds', '1', '--metrics-port', metricsPort]);
});
after(async () => {
  await h.stopAll();
});

function metadata(md) {
  const m = new grpc.Metadata();
  for (const [k, v] of Object.entries(md)) m.set(k, v);
  return m;
}

// Opens a lifecycle watch on `server`: `w.registered` resolves with its headers, `w.ended` with its
// final error, `w.events` collects what it reads.
function watch(server, request, md = KEY_SECRET) {
  const stub = new relayV1.Channels(`127.0.0.1:${server.grpcPort}`, grpc.credentials.createInsecure());
  const call = stub.WatchLifecycleEvents({ app: h.APP.id, ...request }, metadata(md));
  const w = { call, events: [] };
  w.ended = new Promise((resolve) => call.on('error', resolve));
  w.registered = new Promise((resolve, reject) => {
    call.on('metadata', resolve);
    w.ended.then((e) => reject(new Error(`watch refused: ${codeName(e.code)} ${e.details}`)));
  });
  w.registered.catch(() => {});
  w.ended.then(() => stub.close());
  call.on('data', (e) => w.events.push(e));
  w.close = () => { call.cancel(); stub.close(); };
  return w;
}

async function refused(server, request, code, gist, md = KEY_SECRET) {
  const w = watch(server, request, md);
  const err = await Promise.race([w.ended,
    new Promise((_, reject) => setTimeout(() => reject(new Error(`no end within 10 s, want ${codeName(code)}`)), 10000))]);
  assert.strictEqual(codeName(err.code), codeName(code), err.details);
  assert.match(err.details, gist);
  return err;
}

// "name channel [user]" of each event.
const names = (events) => events.map((e) => `${e.name} ${e.channel}${e.user_id ? ' ' + e.user_id : ''}`);
const cursors = (events) => events.map((e) => Number(e.cursor));
const contiguous = (events) => cursors(events).every((c, i, a) => i === 0 || c === a[i - 1] + 1);

let lastBeforeRestart;   // the last cursor seen before the control plane restart
let seenBeforeRestart;   // every event seen by then, by cursor
test('a consumer reads lifecycle events from pusher-js clients, disconnects, and resumes with its cursor to exactly what it missed', async () => {
  const first = watch(n1, {});  // live: no since_cursor
  await first.registered;
  const { c: alice, ch } = await h.join(n1, 'u-1', 'presence-room');
  const { c: bob, ch: bobCh } = await h.join(n1, 'u-2', 'presence-room');
  const relayed = h.once(bobCh, 'client-hi');
  assert.ok(ch.trigger('client-hi', { text: 'hello' }));
  await relayed;
  await h.waitFor(() => first.events.length >= 4, 10000, `four events (${names(first.events)})`);
  assert.deepStrictEqual(names(first.events), [
    'channel_occupied presence-room', 'member_added presence-room u-1', 'member_added presence-room u-2',
    'client_event presence-room u-1']);
  const hi = first.events[3];
  assert.strictEqual(hi.event, 'client-hi');
  assert.strictEqual(hi.data, '{"text":"hello"}');
  assert.strictEqual(hi.socket_id, alice.connection.socket_id);
  assert.ok(contiguous(first.events), String(cursors(first.events)));
  assert.ok(Math.abs(Number(hi.time_ms) - Date.now()) < 60000);
  const last = Number(first.events[3].cursor);
  first.close();

  // Missed while disconnected: bob leaves (the control plane has applied it once the roster shows
  // it, so the order is set), then carol joins.
  bob.disconnect();
  const users = async () => (await (await h.sdk(n1).get({ path: '/channels/presence-room/users' })).json())
    .users.map((u) => u.id).sort().join();
  await h.waitFor(async () => (await users()) === 'u-1', 10000, 'bob gone');
  const { ch: carolCh } = await h.join(n1, 'u-3', 'presence-room');

  const resumed = watch(n1, { since_cursor: String(last) });
  await resumed.registered;
  await h.waitFor(() => resumed.events.length >= 2, 10000, `the missed events (${names(resumed.events)})`);
  // One more after resuming: nothing else was in between.
  assert.ok(carolCh.trigger('client-bye', {}));
  await h.waitFor(() => resumed.events.length >= 3, 10000, `the live event (${names(resumed.events)})`);
  assert.deepStrictEqual(names(resumed.events),
    ['member_removed presence-room u-2', 'member_added presence-room u-3', 'client_event presence-room u-3']);
  assert.deepStrictEqual(cursors(resumed.events), [last + 1, last + 2, last + 3]);
  resumed.close();
  lastBeforeRestart = last + 3;
  seenBeforeRestart = [...first.events, ...resumed.events];
  alice.disconnect();
});

test('across a control plane restart (SIGKILL) the log is replayed from disk: same cursors, same events, none twice', async () => {
  assert.ok(lastBeforeRestart, 'needs the previous test');
  await h.restartControlPlane(n1);  // SIGKILL: only what was committed survives, and only that was streamed
  const firstCursor = Number(seenBeforeRestart[0].cursor);
  const replay = watch(n1, { since_cursor: String(firstCursor - 1) });
  await h.waitFor(() => replay.events.length >= seenBeforeRestart.length, 15000, `the replay (${names(replay.events)})`);
  const before = replay.events.slice(0, seenBeforeRestart.length);
  const strip = (e) => ({ ...e });
  assert.deepStrictEqual(before.map(strip), seenBeforeRestart.map(strip));
  // What the restart itself caused (the data plane's roster re-applied) comes after, with new
  // cursors: each cursor once.
  const { c } = await h.join(n1, 'u-9', 'presence-after');
  await h.waitFor(() => names(replay.events).includes('member_added presence-after u-9'), 10000, `the live event (${names(replay.events)})`);
  assert.ok(contiguous(replay.events), String(cursors(replay.events)));
  assert.strictEqual(new Set(cursors(replay.events)).size, replay.events.length);
  assert.ok(cursors(replay.events).every((x, i) => i < seenBeforeRestart.length || x > lastBeforeRestart));
  replay.close();
  c.disconnect();
});

test('relayctl watch --lifecycle --since prints the events after the cursor, human or JSON', async () => {
  const since = lastBeforeRestart - 2;
  const run = (json) => new Promise((resolve, reject) => {
    const args = ['--server', `127.0.0.1:${n1.grpcPort}`, '--data-dir', n1.dataDir,
      ...(json ? ['--json'] : []), 'watch', '--app', h.APP.id, '--lifecycle', '--since', String(since),
      '--prefix', 'presence-room'];
    const proc = spawn(path.join(h.BIN, 'relayctl'), args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    proc.stdout.on('data', (d) => { out += d; });
    proc.stderr.on('data', (d) => { err += d; });
    h.waitFor(() => out.split('\n').filter(Boolean).length >= 2, 10000, `two lines (${out} ${err})`)
      .then(() => { proc.kill('SIGTERM'); resolve(out); }, (e) => { proc.kill('SIGKILL'); reject(e); });
  });
  const lines = (await run(true)).split('\n').filter(Boolean).map((l) => JSON.parse(l));
  assert.deepStrictEqual(lines.slice(0, 2).map((e) => [e.cursor, e.name, e.user_id]),
    [[since + 1, 'member_added', 'u-3'], [since + 2, 'client_event', 'u-3']]);
  assert.strictEqual(lines[1].event, 'client-bye');
  assert.match(lines[0].time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
  const human = (await run(false)).split('\n');
  assert.match(human[0], new RegExp(`^#${since + 1}  \\S+  member_added  presence-room  user u-3$`));
  assert.match(human[1], new RegExp(`^#${since + 2}  \\S+  client_event  presence-room  client-bye  \\{\\}  \\(client \\S+ user u-3\\)$`));
});

test('refusals: no credentials, a bad filter, a cursor never given out', async () => {
  await refused(n1, {}, status.UNAUTHENTICATED, /missing credentials/, {});
  await refused(n1, { events: ['nope'] }, status.INVALID_ARGUMENT, /unknown event type 'nope'/);
  await refused(n1, { prefix: 'bad prefix' }, status.INVALID_ARGUMENT, /invalid prefix/);
  await refused(n1, { since_cursor: '999999' }, status.INVALID_ARGUMENT, /never given out/);
  await refused(n1, { app: 'no-such-app' }, status.NOT_FOUND, /no-such-app/);
  const bad = await h.relayctl(n1, ['watch', '--app', h.APP.id, '--lifecycle', '--since', 'x']);
  assert.strictEqual(bad.code, 2, bad.stderr);
  const future = await h.relayctl(n1, ['watch', '--app', h.APP.id, '--lifecycle', '--since', '999999']);
  assert.strictEqual(future.code, 6, future.stderr);
  assert.match(future.stderr, /never given out/);
});

test('a cursor older than the retention gets OUT_OF_RANGE (never a silent gap), also in relayctl; metrics count the log', async () => {
  const live = watch(pruning, { since_cursor: '0' });
  await live.registered;
  const { c } = await h.join(pruning, 'u-1', 'presence-old');
  await h.waitFor(() => live.events.length >= 2, 10000, `two events (${names(live.events)})`);
  live.close();
  c.disconnect();
  // Pruned within about a second (retention 1 s, pruning runs every second).
  let err;
  await h.waitFor(async () => {
    const w = watch(pruning, { since_cursor: '1' });
    err = await Promise.race([w.ended,
      w.registered.then(() => { w.close(); return null; }, () => new Promise(() => {}))]);
    return err !== null && err.code === status.OUT_OF_RANGE;
  }, 15000, 'cursor 1 out of range');
  assert.match(err.details, /older than the lifecycle log keeps.*pruned.*--lifecycle-retention-seconds/s);
  const r = await h.relayctl(pruning, ['watch', '--app', h.APP.id, '--lifecycle', '--since', '1']);
  assert.strictEqual(r.code, 6, r.stderr);
  assert.match(r.stderr, /pruned/);
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const pruned = Number((text.match(/^relay_lifecycle_events_pruned_total (\S+)$/m) || [])[1]);
  assert.ok(pruned >= 2, text.match(/relay_lifecycle.*/g).join('\n'));
  assert.match(text, /^relay_lifecycle_log_events \d+$/m);
  assert.match(text, /^relay_lifecycle_watchers \d+$/m);
});

test('docs/grpc-api.md shows examples/grpc-lifecycle.js byte for byte', () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/grpc-api.md'), 'utf8');
  const example = fs.readFileSync(path.join(ROOT, 'examples/grpc-lifecycle.js'), 'utf8');
  assert.ok(doc.includes('```js\n' + example + '```\n'), 'docs/grpc-api.md must contain examples/grpc-lifecycle.js verbatim in a ```js block');
});

test('examples/grpc-lifecycle.js resumes from its saved cursor after its own restart: the missed events, once', async () => {
  const cursorFile = path.join(h.tempDir(), 'lifecycle.cursor');
  const runExample = () => {
    const proc = spawn(process.execPath, [path.join(ROOT, 'examples/grpc-lifecycle.js')], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, RELAY_GRPC: `127.0.0.1:${n1.grpcPort}`, RELAY_CURSOR_FILE: cursorFile,
        NODE_PATH: path.join(__dirname, 'node_modules') },
    });
    const p = { proc, out: '', err: '' };
    proc.stdout.on('data', (d) => { p.out += d; });
    proc.stderr.on('data', (d) => { p.err += d; });
    p.exited = new Promise((resolve) => proc.once('exit', resolve));
    return p;
  };
  const one = runExample();
  try {
    await h.waitFor(() => /^watching$/m.test(one.out), 10000, `watching (${one.err})`);
    const { c } = await h.join(n1, 'ex-1', 'presence-example');
    await h.waitFor(() => one.out.includes('member_added presence-example user ex-1'), 10000, `the join (${one.out})`);
    one.proc.kill('SIGTERM');
    await one.exited;
    const saved = fs.readFileSync(cursorFile, 'utf8');
    // While it is down: another member comes and goes.
    const { c: other } = await h.join(n1, 'ex-2', 'presence-example');
    other.disconnect();
    const two = runExample();
    try {
      await h.waitFor(() => two.out.includes('member_removed presence-example user ex-2'), 10000, `the missed events (${two.out} ${two.err})`);
      const lines = two.out.split('\n').filter((l) => l.startsWith('#'));
      assert.match(two.out, new RegExp(`^watching after #${saved}$`, 'm'));
      assert.deepStrictEqual(lines.map((l) => l.replace(/^#\d+ /, '')),
        ['member_added presence-example user ex-2', 'member_removed presence-example user ex-2']);
      assert.strictEqual(lines[0], `#${Number(saved) + 1} member_added presence-example user ex-2`);
    } finally {
      two.proc.kill('SIGTERM');
    }
    c.disconnect();
  } finally {
    one.proc.kill('SIGTERM');
  }
});

test('bad lifecycle flag values are usage errors with the flag named', async () => {
  const { execFile } = require('node:child_process');
  const run = (args) => new Promise((resolve) => execFile(path.join(h.BIN, 'relay-controlplane'),
    ['--data-dir', h.tempDir(), '--port', '0', '--grpc-port', '0', ...args], { timeout: 10000 },
    (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stderr })));
  const zero = await run(['--lifecycle-max-events-per-app', '0']);
  assert.strictEqual(zero.code, 2, zero.stderr);
  assert.match(zero.stderr, /--lifecycle-max-events-per-app must be positive/);
  const huge = await run(['--lifecycle-retention-seconds', '999999999999']);
  assert.strictEqual(huge.code, 2, huge.stderr);
  assert.match(huge.stderr, /--lifecycle-retention-seconds must be at most 10 years/);
  const notNumber = await run(['--lifecycle-retention-seconds', 'day']);
  assert.strictEqual(notNumber.code, 2, notNumber.stderr);
  assert.match(notNumber.stderr, /lifecycle-retention-seconds/);
});
