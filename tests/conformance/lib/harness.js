// Test harness: starts the real Relay binaries on free loopback ports, and builds pusher-js and
// pusher SDK clients for them. Every wait is bounded; nothing sleeps to synchronize.
'use strict';
const { spawn, execFile } = require('node:child_process');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');
const Pusher = require('pusher-js');
const PusherServer = require('pusher');

const BIN = process.env.RELAY_BIN_DIR || path.resolve(__dirname, '../../../build/bin');
const APP = { id: 'app-id', key: 'app-key', secret: 'app-secret' };
const procs = new Set();

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
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

// Stops every started process: SIGTERM, then SIGKILL after a bound.
async function stopAll() {
  const waits = [...procs].map((p) => new Promise((resolve) => {
    const t = setTimeout(() => { p.kill('SIGKILL'); resolve(); }, 3000);
    p.once('exit', () => { clearTimeout(t); resolve(); });
    p.kill('SIGINT');
  }));
  await Promise.all(waits);
  procs.clear();
}

// relay in one process. Returns { wsPort, httpPort, grpcPort, dataDir }.
async function startRelay(extra = []) {
  const port = await freePort();
  const grpcPort = await freePort();
  const dataDir = tempDir();
  await start('relay', ['--port', port, '--grpc-port', grpcPort, '--data-dir', dataDir, ...extra].map(String), 'relay ready');
  return { wsPort: port, httpPort: port, grpcPort, dataDir };
}

// relay-controlplane + relay-dataplane as two processes (`dpEnv`: extra environment of the data
// plane).
async function startSplit(cpExtra = [], dpEnv = {}) {
  const httpPort = await freePort();
  const grpcPort = await freePort();
  const wsPort = await freePort();
  const dataDir = tempDir();
  const cpArgs = ['--port', httpPort, '--grpc-port', grpcPort, '--data-dir', dataDir, ...cpExtra].map(String);
  const cp = await start('relay-controlplane', cpArgs, 'controlplane ready');
  const dp = await start('relay-dataplane', ['--port', wsPort, '--control-plane', `127.0.0.1:${grpcPort}`, '--node-id', 'n1'].map(String), 'dataplane ready', 15000, dpEnv);
  await waitFor(() => dp.log().includes('attached to control plane'), 15000);
  return { wsPort, httpPort, grpcPort, dataDir, cp, cpArgs, dp };
}

// Stops the split shape's control plane (SIGKILL by default) and starts it again on the same ports and
// data dir; resolves once the data plane has re-attached.
async function restartControlPlane(server, signal = 'SIGKILL') {
  const attachesBefore = (server.dp.log().match(/attached to control plane/g) || []).length;
  const exited = new Promise((resolve) => server.cp.child.once('exit', resolve));
  server.cp.child.kill(signal);
  await exited;
  server.cp = await start('relay-controlplane', server.cpArgs, 'controlplane ready');
  await waitFor(() => (server.dp.log().match(/attached to control plane/g) || []).length > attachesBefore,
    15000, 'data plane re-attach');
  return true;
}

// Starts one more data plane attached to the split shape's control plane.
async function addDataPlane(server, nodeId, env = {}) {
  const wsPort = await freePort();
  const dp = await start('relay-dataplane', ['--port', wsPort, '--control-plane', `127.0.0.1:${server.grpcPort}`,
    '--node-id', nodeId].map(String), 'dataplane ready', 15000, env);
  await waitFor(() => dp.log().includes('attached to control plane'), 15000, `${nodeId} attach`);
  return { ...server, wsPort, dp };
}

function waitFor(pred, timeoutMs = 10000, what = 'condition') {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const tick = () => {
      let ok = false;
      try { ok = pred(); } catch (e) { ok = false; }
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

function client(server, opts = {}) {
  return new Pusher(APP.key, {
    wsHost: '127.0.0.1', wsPort: server.wsPort, forceTLS: false, enabledTransports: ['ws'],
    cluster: 'mt1', disableStats: true, ...opts,
  });
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

function relayctl(server, args) {
  return new Promise((resolve) => {
    execFile(path.join(BIN, 'relayctl'), ['--server', `127.0.0.1:${server.grpcPort}`, '--data-dir', server.dataDir, ...args],
      { timeout: 15000 }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

module.exports = { APP, startRelay, startSplit, addDataPlane, restartControlPlane, stopAll, waitFor, once, client, sdk, authOptions, relayctl, freePort };
