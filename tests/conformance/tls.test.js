// TLS on the client and HTTP API ports (--tls-cert/--tls-key): pusher-js with forceTLS over wss://
// and the pusher SDK with useTLS over https://, against a test CA this file makes with the openssl
// CLI; a certificate rotation on SIGHUP while a client stays connected; a bad certificate on
// reload; bad flags at startup; hostile bytes on the TLS port; client certificates (mTLS) on the
// node link of the split shape.
'use strict';
const { test, after, before } = require('node:test');
const assert = require('node:assert');
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const https = require('node:https');
const net = require('node:net');
const path = require('node:path');
const tls = require('node:tls');
const h = require('./lib/harness');

after(h.stopAll);

const dir = h.tempDir();
const file = (name) => path.join(dir, name);
const openssl = (args) => execFileSync('openssl', args, { stdio: ['ignore', 'pipe', 'pipe'] });

// A CA (key + self-signed certificate) named `name`.
function makeCa(name) {
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', file(`${name}.key`), '-out', file(`${name}.pem`), '-days', '2',
    '-subj', `/CN=Relay test CA ${name}`]);
}

// A certificate for 127.0.0.1 signed by CA `ca`, with serial `serial`, written to
// `<out>.pem` / `<out>.key`.
function makeCert(ca, out, serial) {
  fs.writeFileSync(file('ext.cnf'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' +
    'basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth,clientAuth\n');
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', file(`${out}.key`), '-out', file(`${out}.csr`), '-subj', '/CN=127.0.0.1']);
  openssl(['x509', '-req', '-in', file(`${out}.csr`), '-CA', file(`${ca}.pem`),
    '-CAkey', file(`${ca}.key`), '-set_serial', String(serial), '-days', '2',
    '-extfile', file('ext.cnf'), '-out', file(`${out}.pem`)]);
}

let caPem;
before(() => {
  makeCa('ca');
  makeCa('other');
  makeCert('ca', 'server1', 1001);
  makeCert('ca', 'server2', 1002);
  makeCert('ca', 'node', 2001);
  makeCert('other', 'stranger', 3001);
  caPem = fs.readFileSync(file('ca.pem'));
  // pusher-js (faye-websocket) has no option for trusted roots: trust the test CA for every TLS
  // connection this process makes, as NODE_EXTRA_CA_CERTS would.
  const connect = tls.connect;
  tls.connect = function patched(...args) {
    if (args[0] && typeof args[0] === 'object' && !args[0].ca) args[0] = { ...args[0], ca: caPem };
    return connect.apply(this, args);
  };
});

// The served certificate's serial (a number), from a fresh TLS connection to `port`.
function servedSerial(port) {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: caPem }, () => {
      const serial = parseInt(s.getPeerCertificate().serialNumber, 16);
      s.destroy();
      resolve(serial);
    });
    s.on('error', reject);
  });
}

function wssClient(server) {
  return h.client(server, { forceTLS: true, wsPort: undefined, wssPort: server.wsPort });
}

function httpsSdk(server) {
  const Pusher = require('pusher');
  return new Pusher({ appId: h.APP.id, key: h.APP.key, secret: h.APP.secret, host: '127.0.0.1',
    port: String(server.httpPort), useTLS: true, agent: new https.Agent({ ca: caPem }) });
}

// `relay` serving TLS with the certificate at server.pem (a copy of server1 to start with).
async function startTlsRelay() {
  fs.copyFileSync(file('server1.pem'), file('server.pem'));
  fs.copyFileSync(file('server1.key'), file('server.key'));
  return h.startRelay(['--tls-cert', file('server.pem'), '--tls-key', file('server.key')]);
}

test('pusher-js over wss:// receives an event the SDK triggers over https://', async () => {
  const server = await startTlsRelay();
  const c = wssClient(server);
  const ch = c.subscribe('orders');
  await h.once(ch, 'pusher:subscription_succeeded');
  const got = h.once(ch, 'shipped');
  const res = await httpsSdk(server).trigger('orders', 'shipped', { id: 1 });
  assert.strictEqual(res.status, 200);
  assert.deepStrictEqual((await got).data, { id: 1 });
  // The port speaks TLS only: a plaintext request gets no HTTP answer.
  await assert.rejects(fetch(`http://127.0.0.1:${server.httpPort}/health`));
  c.disconnect();
});

test('SIGHUP rotates the certificate; connected clients stay; a bad one on reload is refused', async () => {
  const server = await startTlsRelay();
  assert.strictEqual(await servedSerial(server.wsPort), 1001);
  const c = wssClient(server);
  const ch = c.subscribe('rotating');
  await h.once(ch, 'pusher:subscription_succeeded');
  const states = [];  // from here on: any reconnect would show
  c.connection.bind('state_change', (s) => states.push(s.current));
  const socketId = c.connection.socket_id;

  // Rotate: the new pair at the same paths, then SIGHUP.
  fs.copyFileSync(file('server2.pem'), file('server.pem'));
  fs.copyFileSync(file('server2.key'), file('server.key'));
  server.proc.child.kill('SIGHUP');
  await h.waitFor(async () => (await servedSerial(server.wsPort)) === 1002, 10000, 'new certificate');
  const got = h.once(ch, 'after-rotation');
  await httpsSdk(server).trigger('rotating', 'after-rotation', { n: 2 });
  assert.deepStrictEqual((await got).data, { n: 2 });
  assert.strictEqual(c.connection.socket_id, socketId);
  assert.deepStrictEqual(states, [], 'the client never left the connected state');

  // A broken certificate file: the reload fails, the previous certificate stays in use.
  fs.writeFileSync(file('server.pem'), 'not a certificate\n');
  server.proc.child.kill('SIGHUP');
  await h.waitFor(() => server.proc.log().includes('certificate not reloaded'), 10000, 'reload error');
  assert.strictEqual(await servedSerial(server.wsPort), 1002);
  const fresh = wssClient(server);
  const fch = fresh.subscribe('rotating');
  await h.once(fch, 'pusher:subscription_succeeded');
  const both = [h.once(ch, 'after-bad-reload'), h.once(fch, 'after-bad-reload')];
  await httpsSdk(server).trigger('rotating', 'after-bad-reload', { n: 3 });
  for (const p of both) assert.deepStrictEqual((await p).data, { n: 3 });
  assert.deepStrictEqual(states, []);
  c.disconnect();
  fresh.disconnect();
});

test('bad --tls-cert / --tls-key: a clear error and a non-zero exit at startup', async () => {
  const run = (args) => {
    try {
      execFileSync(path.join(h.BIN, 'relay'), ['--port', '0', '--grpc-port', '0',
        '--data-dir', h.tempDir(), ...args], { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 });
      return { code: 0, stderr: '' };
    } catch (e) {
      return { code: e.status, stderr: String(e.stderr) };
    }
  };
  let r = run(['--tls-cert', file('missing.pem'), '--tls-key', file('server1.key')]);
  assert.strictEqual(r.code, 2);
  assert.match(r.stderr, /cannot read --tls-cert .*missing\.pem/);
  r = run(['--tls-cert', file('server1.pem'), '--tls-key', file('server2.key')]);
  assert.strictEqual(r.code, 2);
  assert.match(r.stderr, /--tls-key .* does not match --tls-cert/);
  r = run(['--tls-cert', file('server1.key'), '--tls-key', file('server1.key')]);
  assert.strictEqual(r.code, 2);
  assert.match(r.stderr, /is not a PEM certificate chain/);
  r = run(['--tls-cert', file('server1.pem')]);
  assert.strictEqual(r.code, 2);
  assert.match(r.stderr, /--tls-cert and --tls-key must be given together/);
});

test('garbage and abandoned handshakes on the TLS port break nothing', async () => {
  const server = await startTlsRelay();
  const hostile = [
    Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),                   // plaintext on TLS
    Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 1, 2, 3, 4, 5, 6, 7]),  // a record header, then junk
    Buffer.alloc(70000, 0x41),                                         // a flood of junk
  ];
  for (const bytes of hostile) {
    await new Promise((resolve) => {
      const s = net.connect(server.wsPort, '127.0.0.1', () => s.write(bytes));
      s.on('data', () => {});
      s.on('error', resolve);
      s.on('close', resolve);
      setTimeout(() => s.destroy(), 500).unref();
    });
  }
  // Handshakes cut off halfway, and one from a client that does not trust the server.
  for (let i = 0; i < 20; i++) {
    const s = tls.connect({ host: '127.0.0.1', port: server.wsPort, ca: caPem });
    s.on('error', () => {});
    s.once('secureConnect', () => s.destroy());
    net.connect(server.wsPort, '127.0.0.1', function () { this.write(Buffer.from([0x16, 0x03])); this.destroy(); })
      .on('error', () => {});
  }
  await assert.rejects(new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port: server.wsPort, ca: fs.readFileSync(file('other.pem')) }, resolve);
    s.on('error', reject);
  }));
  // Still serving, over TLS, end to end.
  const c = wssClient(server);
  const ch = c.subscribe('after-garbage');
  await h.once(ch, 'pusher:subscription_succeeded');
  const got = h.once(ch, 'ok');
  await httpsSdk(server).trigger('after-garbage', 'ok', {});
  await got;
  c.disconnect();
  assert.strictEqual(server.proc.child.exitCode, null);
});

test('split shape: https:// on the control plane, wss:// on the data plane', async () => {
  const server = await h.startSplit(['--tls-cert', file('server1.pem'), '--tls-key', file('server1.key')]);
  // The harness started the data plane in plaintext; add one with TLS.
  const node = await h.addDataPlane(server, 'tls-node', {}, ['--tls-cert', file('server2.pem'), '--tls-key', file('server2.key')]);
  assert.strictEqual(await servedSerial(server.httpPort), 1001);
  assert.strictEqual(await servedSerial(node.wsPort), 1002);
  const c = wssClient(node);
  const ch = c.subscribe('split');
  await h.once(ch, 'pusher:subscription_succeeded');
  const got = h.once(ch, 'e');
  const res = await httpsSdk(server).trigger('split', 'e', { x: 1 });
  assert.strictEqual(res.status, 200);
  assert.deepStrictEqual((await got).data, { x: 1 });
  c.disconnect();
});

test('mTLS on the node link: only a data plane with a client certificate from the CA attaches', async () => {
  const dataDir = h.tempDir();
  const { ports: [httpPort, grpcPort], proc: cp } = await h.startOnFreePorts('relay-controlplane', 2,
    ([p, g]) => ['--port', p, '--grpc-port', g, '--data-dir', dataDir,
      '--grpc-tls-cert', file('server1.pem'), '--grpc-tls-key', file('server1.key'),
      '--node-link-client-ca', file('ca.pem')], 'controlplane ready');
  const dataPlane = async (nodeId, tlsArgs) => {
    const { ports: [wsPort], proc } = await h.startOnFreePorts('relay-dataplane', 1,
      ([p]) => ['--port', p, '--control-plane', `127.0.0.1:${grpcPort}`, '--node-id', nodeId,
        '--node-token-file', path.join(dataDir, 'node.token'), '--control-plane-ca', file('ca.pem'),
        ...tlsArgs], 'dataplane ready');
    return { wsPort, httpPort, proc };
  };
  const attached = (dp) => dp.proc.log().includes('attached to control plane');

  // With a certificate from the CA (and the node token): attaches and delivers.
  const good = await dataPlane('with-cert', ['--control-plane-tls-cert', file('node.pem'),
    '--control-plane-tls-key', file('node.key')]);
  await h.waitFor(() => attached(good), 15000, 'attach with a client certificate');
  const c = h.client(good);
  const ch = c.subscribe('mtls');
  await h.once(ch, 'pusher:subscription_succeeded');
  const got = h.once(ch, 'e');
  await h.sdk({ httpPort }).trigger('mtls', 'e', { ok: true });
  assert.deepStrictEqual((await got).data, { ok: true });
  c.disconnect();

  // Without a client certificate: the token alone is refused.
  const bare = await dataPlane('no-cert', []);
  await h.waitFor(() => /refused this node: .*client certificate/.test(bare.proc.log()), 15000,
    'refusal without a client certificate');
  assert.match(cp.log(), /no verified client certificate/);
  assert.ok(!attached(bare));

  // With a certificate from another CA: the TLS handshake fails.
  const stranger = await dataPlane('stranger', ['--control-plane-tls-cert', file('stranger.pem'),
    '--control-plane-tls-key', file('stranger.key')]);
  await h.waitFor(() => stranger.proc.log().includes('unreachable'), 15000, 'failed handshake');
  assert.ok(!attached(stranger));
  // The good node is still attached and the control plane still up.
  assert.strictEqual(cp.child.exitCode, null);
  assert.ok(!good.proc.log().includes('lost the control plane'));
});

test('--node-link-client-ca without gRPC TLS is a usage error', async () => {
  let code = 0;
  let stderr = '';
  try {
    execFileSync(path.join(h.BIN, 'relay-controlplane'), ['--port', '0', '--grpc-port', '0',
      '--data-dir', h.tempDir(), '--node-link-client-ca', file('ca.pem')],
    { stdio: ['ignore', 'pipe', 'pipe'], timeout: 10000 });
  } catch (e) {
    code = e.status;
    stderr = String(e.stderr);
  }
  assert.notStrictEqual(code, 0);
  assert.match(stderr, /--node-link-client-ca needs --grpc-tls-cert/);
});
