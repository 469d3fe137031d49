// Test harness: starts the real Relay binaries on free loopback ports, and builds pusher-js and
// pusher SDK clients for them. Every wait is bounded; nothing sleeps to synchronize.
'use strict';
const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Pusher = require('pusher-js');
const PusherServer = require('pusher');

const BIN = process.env.RELAY_BIN_DIR || path.resolve(__dirname, '../../../build/bin');
const APP = { id: 'app-id', key: 'app-key', secret: 'app-secret' };
const procs = new Set();
const clients = new Set();  // every pusher-js client made here, disconnected by stopAll()

// A port nothing listens on right now (another process may still take it before it is used:
// startOnFreePorts retries). The kernel picks one from its ephemeral range; when that range is
// exhausted (other load on the machine), a random port below it is tried instead.
async function freePort() {
  const tryListen = (port) => new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(port, '127.0.0.1', () => {
      const bound = s.address().port;
      s.close(() => resolve(bound));
    });
  });
  for (let attempt = 1; ; attempt++) {
    try {
      return await tryListen(attempt === 1 ? 0 : 10000 + Math.floor(Math.random() * 22000));
    } catch (e) {
      if (e.code !== 'EADDRINUSE' || attempt >= 50) throw e;
    }
  }
}

function tempDir() {
  return fs.mkdtempSync(path.join(os.tmpdir(), 'relay-conformance-'));
}

// Starts a binary and resolves once its log shows `ready` (rejects with the log otherwise).
// `env` adds environment variables (e.g. RELAY_LOG_LEVEL).
function start(name, args, ready, timeoutMs = 15000, env = {}) {
  return new Promise((resolve, reject) => {
    const child = spawn(path.join(BIN, name), args,
      { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    procs.add(child);
    let log = '';
    const timer = setTimeout(() => reject(new Error(`${name} not ready in ${timeoutMs} ms:\n${log}`)), timeoutMs);
    const onData = (d) => {
      log += d.toString();
      if (log.includes(ready)) {
        clearTimeout(timer);
        resolve({ child, log: () => log });
      }
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => {
      procs.delete(child);
      clearTimeout(timer);
      reject(new Error(`${name} exited with ${code}:\n${log}`));
    });
  });
}

// start() with `count` fresh ports given to `argsFor(ports)`; when a port was taken in between
// (the binary says it cannot listen), tries again with new ones. Resolves with { ports, proc }.
async function startOnFreePorts(name, count, argsFor, ready, env = {}) {
  for (let attempt = 1; ; attempt++) {
    const ports = [];
    for (let i = 0; i < count; i++) ports.push(await freePort());
    try {
      return { ports, proc: await start(name, argsFor(ports).map(String), ready, 15000, env) };
    } catch (e) {
      if (attempt >= 5 || !/cannot listen|address already in use/i.test(e.message)) throw e;
    }
  }
}

// Stops every started process: SIGTERM, then SIGKILL after a bound.
async function stopAll() {
  // A client a test left connecting (a reconnect in flight) would keep retrying, and this test
  // process alive, after the servers are gone.
  for (const c of clients) c.disconnect();
  clients.clear();
  const waits = [...procs].map((p) => new Promise((resolve) => {
    const t = setTimeout(() => { p.kill('SIGKILL'); resolve(); }, 3000);
    p.once('exit', () => { clearTimeout(t); resolve(); });
    p.kill('SIGINT');
  }));
  await Promise.all(waits);
  procs.clear();
}

// relay in one process. Returns { wsPort, httpPort, grpcPort, dataDir, proc }.
async function startRelay(extra = []) {
  const dataDir = tempDir();
  const { ports: [port, grpcPort], proc } = await startOnFreePorts('relay', 2,
    ([p, g]) => ['--port', p, '--grpc-port', g, '--data-dir', dataDir, ...extra], 'relay ready');
  return { wsPort: port, httpPort: port, grpcPort, dataDir, proc };
}

// relay-controlplane + relay-dataplane n1 as two processes (`dpEnv`: extra environment of the
// data plane).
async function startSplit(cpExtra = [], dpEnv = {}) {
  const dataDir = tempDir();
  let cpArgs;
  const { ports: [httpPort, grpcPort], proc: cp } = await startOnFreePorts('relay-controlplane', 2, ([p, g]) => {
    cpArgs = ['--port', p, '--grpc-port', g, '--data-dir', dataDir, ...cpExtra].map(String);
    return cpArgs;
  }, 'controlplane ready');
  // `dps`: every data plane of this control plane (shared by the handles addDataPlane returns).
  const server = { httpPort, grpcPort, dataDir, cp, cpArgs, dps: [] };
  return addDataPlane(server, 'n1', dpEnv);
}

const attachCount = (dp) => (dp.log().match(/attached to control plane/g) || []).length;
const alive = (dp) => dp.child.exitCode === null && dp.child.signalCode === null;

// Stops the split shape's control plane (SIGKILL by default) and starts it again on the same ports and
// data dir; resolves once every live data plane has re-attached.
async function restartControlPlane(server, signal = 'SIGKILL') {
  await stopControlPlane(server, signal);
  return startControlPlane(server);
}

// The first half of a restart: the control plane is gone once this resolves.
async function stopControlPlane(server, signal = 'SIGKILL') {
  const live = server.dps.filter(alive);
  server.attachesBefore = new Map(live.map((dp) => [dp, attachCount(dp)]));
  const exited = new Promise((resolve) => server.cp.child.once('exit', resolve));
  server.cp.child.kill(signal);
  await exited;
}

// The second half: starts the control plane again and waits for every live data plane to re-attach.
async function startControlPlane(server) {
  server.cp = await start('relay-controlplane', server.cpArgs, 'controlplane ready');
  for (const [dp, before] of server.attachesBefore) {
    if (alive(dp)) await waitFor(() => attachCount(dp) > before, 15000, 'data plane re-attach');
  }
  return true;
}

// Starts one more data plane attached to the split shape's control plane; returns a handle for it
// (the control plane's fields, with this node's wsPort and dp). `extra`: more flags.
async function addDataPlane(server, nodeId, env = {}, extra = []) {
  const { ports: [wsPort], proc: dp } = await startOnFreePorts('relay-dataplane', 1,
    ([p]) => ['--port', p, '--control-plane', `127.0.0.1:${server.grpcPort}`, '--node-id', nodeId,
      '--node-token-file', path.join(server.dataDir, 'node.token'), ...extra], 'dataplane ready', env);
  await waitFor(() => dp.log().includes('attached to control plane'), 15000, `${nodeId} attach`);
  server.dps.push(dp);
  return { ...server, wsPort, dp };
}

// A control plane with `count` data planes n1..nN; returns one handle per node. The first is the
// startSplit handle (give that one to restartControlPlane); any of them works for sdk and relayctl.
async function startCluster(count = 3, cpExtra = []) {
  const first = await startSplit(cpExtra);
  const nodes = [first];
  for (let i = 2; i <= count; i++) nodes.push(await addDataPlane(first, `n${i}`));
  return nodes;
}

// SIGKILLs a data plane and resolves once it is gone.
async function killDataPlane(node) {
  const exited = new Promise((resolve) => node.dp.child.once('exit', resolve));
  node.dp.child.kill('SIGKILL');
  await exited;
}

// Polls `pred` (which may be async) every 10 ms until it holds, for at most `timeoutMs`.
function waitFor(pred, timeoutMs = 10000, what = 'condition') {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = async () => {
      let ok = false;
      try { ok = await pred(); } catch (e) { ok = false; }
      if (ok) return resolve();
      if (Date.now() - t0 > timeoutMs) return reject(new Error(`timed out waiting for ${what}`));
      setTimeout(tick, 10);
    };
    tick();
  });
}

// Resolves with the first emission of `event` on `emitter` (pusher-js channel or connection).
function once(emitter, event, timeoutMs = 10000) {
  return new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`no ${event} within ${timeoutMs} ms`)), timeoutMs);
    const cb = (data, meta) => { clearTimeout(t); emitter.unbind(event, cb); resolve({ data, meta }); };
    emitter.bind(event, cb);
  });
}

// Calls `send` until `received()` holds (each try waits up to `waitMs` for it), at most `tries`
// times: for deliveries that depend on state the control plane learns asynchronously (a user's
// sign-in). Resolves with whether it was received.
async function resendUntil(send, received, tries = 50, waitMs = 200) {
  for (let i = 0; i < tries && !received(); i++) {
    await send();
    await waitFor(received, waitMs).catch(() => {});
  }
  return received();
}

// Triggers through the SDK, retrying while the control plane refuses with 503 (it cannot route
// yet: a killed node's channels until it re-attaches or its node timeout passes, or data planes
// re-attaching after a restart), as a backend should. Retry pacing, not synchronization.
async function triggerRetrying(server, channel, name, data, tries = 200) {
  for (let i = 1; ; i++) {
    try {
      return await sdk(server).trigger(channel, name, data);
    } catch (e) {
      if (e.status !== 503 || i >= tries) throw e;
      await new Promise((resolve) => setTimeout(resolve, 50));
    }
  }
}

// Signs a pusher-js client in and resolves once pusher-js has seen pusher:signin_success.
async function signIn(c) {
  c.signin();
  await once(c.connection, 'connected');
  await c.user.signinDonePromise;
}

function client(server, opts = {}) {
  const c = new Pusher(APP.key, {
    wsHost: '127.0.0.1', wsPort: server.wsPort, forceTLS: false, enabledTransports: ['ws'],
    cluster: 'mt1', disableStats: true, ...opts,
  });
  clients.add(c);
  return c;
}

function sdk(server, secret = APP.secret) {
  return new PusherServer({ appId: APP.id, key: APP.key, secret, host: '127.0.0.1', port: String(server.httpPort), useTLS: false });
}

// pusher-js authorizers that sign with the SDK, as an app's auth endpoint would.
function authOptions(server, userFor) {
  const s = sdk(server);
  return {
    channelAuthorization: {
      customHandler: (p, cb) => {
        const presence = p.channelName.startsWith('presence-') ? userFor() : undefined;
        cb(null, s.authorizeChannel(p.socketId, p.channelName, presence));
      },
    },
    userAuthentication: {
      customHandler: (p, cb) => cb(null, s.authenticateUser(p.socketId, userFor())),
    },
  };
}

// A pusher-js client on `node` joined to presence `channel` as `userId`; resolves with the client,
// the channel and the roster from subscription_succeeded.
async function join(node, userId, channel, userInfo = undefined) {
  const c = client(node, authOptions(node, () => ({ user_id: userId, user_info: userInfo })));
  const ch = c.subscribe(channel);
  try {
    const { data } = await once(ch, 'pusher:subscription_succeeded');
    return { c, ch, members: data };
  } catch (e) { c.disconnect(); throw e; }
}

// Every event a pusher-js channel emits, in arrival order: [{ name, data }].
function record(channel) {
  const events = [];
  channel.bind_global((name, data) => events.push({ name, data }));
  return events;
}

// Every connection state a pusher-js client goes through from now on.
function states(c) {
  const seen = [];
  c.connection.bind('state_change', (s) => seen.push(s.current));
  return seen;
}

// Publishes a marker event on `channel` and waits until each of `subscribed` (pusher-js channel
// objects of that channel) has it. Events reach a connection in order, so afterwards every event
// published or caused before the marker has arrived too.
let markers = 0;
async function flush(server, channel, subscribed) {
  const name = `marker-${++markers}`;
  const got = subscribed.map((ch) => once(ch, name));
  await sdk(server).trigger(channel, name, {});
  await Promise.all(got);
}

// Resolves once the control plane has applied everything `c`'s data plane reported before now:
// a cache channel subscription is answered by the control plane in order with the node's earlier
// state changes (sign-ins, subscriptions).
let barriers = 0;
async function barrier(c) {
  const name = `cache-barrier-${++barriers}`;
  const ch = c.subscribe(name);
  await once(ch, 'pusher:cache_miss');
  c.unsubscribe(name);
}

// The control plane's count of commands sent to data planes (publish, send-to-user...).
async function publishCommands(server) {
  const r = await relayctl(server, ['stats', '--json']);
  if (r.code !== 0) throw new Error(`relayctl stats: ${r.stderr}`);
  return Number(JSON.parse(r.stdout).publish_commands || 0);
}

// A webhook receiver on 127.0.0.1 that answers `failFirst` requests with 500, then 200, and keeps
// the events it could verify with the pusher SDK (for `app`, the default app when null).
async function webhookReceiver(failFirst = 0, app = null) {
  const r = { events: [], requests: 0, invalid: 0, failLeft: failFirst, batches: [] };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      r.requests++;
      if (r.failLeft > 0) { r.failLeft--; res.writeHead(500); res.end(); return; }
      const a = app || APP;
      const verifier = new PusherServer({ appId: a.id, key: a.key, secret: a.secret, host: '127.0.0.1', port: '1' });
      const hook = verifier.webhook({ headers: req.headers, rawBody: body });
      if (!hook.isValid()) { r.invalid++; res.writeHead(401); res.end(); return; }
      r.events.push(...hook.getEvents());
      r.batches.push({ size: hook.getEvents().length, headers: req.headers });
      res.writeHead(200); res.end('{}');
    });
  });
  const port = await freePort();
  await new Promise((resolve, reject) => { server.once('error', reject); server.listen(port, '127.0.0.1', resolve); });
  r.url = `http://127.0.0.1:${server.address().port}/hooks`;
  r.close = () => server.close();
  // "name:channel[:user_id]" of every verified event, in arrival order.
  r.names = () => r.events.map((e) => `${e.name}:${e.channel}${e.user_id ? ':' + e.user_id : ''}`);
  return r;
}

function relayctl(server, args) {
  return new Promise((resolve) => {
    execFile(path.join(BIN, 'relayctl'), ['--server', `127.0.0.1:${server.grpcPort}`, '--data-dir', server.dataDir, ...args],
      { timeout: 15000 }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

// One raw POST /apps/<APP>/events with the app's credentials (no retry): resolves with
// { status, retryAfter, body } or { error } (a connection error, or no answer in `timeoutMs`).
function rawTrigger(port, channel, name, data, timeoutMs = 2000) {
  const body = JSON.stringify({ name, channels: [channel], data: JSON.stringify(data) });
  return new Promise((resolve) => {
    const req = http.request({
      host: '127.0.0.1', port, method: 'POST', path: `/apps/${APP.id}/events`, timeout: timeoutMs,
      headers: {
        'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body),
        'X-Relay-Key': APP.key, 'X-Relay-Secret': APP.secret,
      },
    }, (res) => {
      let text = '';
      res.on('data', (d) => { text += d; });
      res.on('end', () => resolve({ status: res.statusCode, retryAfter: res.headers['retry-after'], body: text }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ error }));
    req.end(body);
  });
}

module.exports = {
  APP, BIN, tempDir, start, startOnFreePorts, startRelay, startSplit, addDataPlane, startCluster, killDataPlane, restartControlPlane, stopControlPlane,
  startControlPlane, stopAll, waitFor, once, resendUntil, signIn, client, sdk, authOptions, relayctl, freePort,
  join, record, states, flush, barrier, publishCommands, webhookReceiver, triggerRetrying, rawTrigger,
};
