// The node link and the admin API against strangers, through the real binaries: a stranger that
// reaches the gRPC port gets UNAUTHENTICATED before any welcome (which would carry every app's
// secret); --internal-grpc-port keeps NodeLink and Admin off the public port; a data plane needs a
// node credential, and one revoked with relayctl is cut off. A Node gRPC client (@grpc/grpc-js)
// plays the stranger; pusher-js and the pusher SDK check that real traffic still flows.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const h = require('./lib/harness');
const { assertAlive, assertServes } = require('./lib/hostile');

const PROTO_ROOT = path.resolve(__dirname, '../../proto');
const load = (file) => grpc.loadPackageDefinition(protoLoader.loadSync(path.join(PROTO_ROOT, file),
  { includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: true })).relay.v1;
const nodeLink = load('relay/v1/node_link.proto');
const admin = load('relay/v1/admin.proto');
const { status } = grpc;
const stubs = [];

after(async () => {
  stubs.forEach((s) => s.close());
  await h.stopAll();
});

function stub(Service, port) {
  const s = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  stubs.push(s);
  return s;
}

function metadata(token) {
  const md = new grpc.Metadata();
  if (token) md.set('authorization', `Bearer ${token}`);
  return md;
}

// Opens NodeLink.Attach as `nodeId` with `token`, sends hello and an empty snapshot, and resolves
// with how the stream ended: { code, details, messages } (messages: what the server sent).
function attach(port, token, nodeId = 'intruder') {
  return new Promise((resolve) => {
    const call = stub(nodeLink.NodeLink, port).Attach(metadata(token), { deadline: Date.now() + 10000 });
    const messages = [];
    call.on('data', (m) => {
      messages.push(m);
      if (m.welcome) call.cancel();  // attached: the test has seen enough
    });
    call.on('error', (e) => resolve({ code: e.code, details: e.details, messages }));
    call.on('end', () => resolve({ code: status.OK, messages }));
    call.write({ seq: 1, hello: { node_id: nodeId } });
    call.write({ seq: 2, snapshot: {} });
  });
}

function unary(client, method, request, token) {
  return new Promise((resolve) => {
    client[method](request, metadata(token), { deadline: Date.now() + 10000 },
      (err, res) => resolve(err ? { code: err.code, details: err.details } : { code: status.OK, res }));
  });
}

test('a stranger on the gRPC port: no credential, a made-up one or an app secret gets UNAUTHENTICATED and no welcome', async () => {
  const server = await h.startRelay();
  const stored = async () => {
    const r = await h.relayctl(server, ['apps', 'list', '--json']);
    assert.strictEqual(r.code, 0, r.stderr);
    return JSON.parse(r.stdout);
  };
  const before = await stored();
  for (const token of [undefined, 'rln_made_up', h.APP.secret]) {
    const r = await attach(server.grpcPort, token);
    assert.strictEqual(r.code, status.UNAUTHENTICATED, `token ${token}: ${r.details}`);
    assert.deepStrictEqual(r.messages, [], 'the welcome carries every secret: nothing may be sent');
  }
  // The admin API too, before anything is read.
  const a = stub(admin.Admin, server.grpcPort);
  const r = await unary(a, 'ListApps', {}, 'rla_made_up');
  assert.strictEqual(r.code, status.UNAUTHENTICATED);
  const t = await unary(a, 'TestWebhooks', { app: 'no-such-app' }, undefined);
  assert.strictEqual(t.code, status.UNAUTHENTICATED, 'checked before the app lookup');
  assertAlive(server.proc, 'relay');
  assert.deepStrictEqual(await stored(), before, 'nothing stored changed');
  await assertServes(server);
});

test('--internal-grpc-port: NodeLink and Admin answer only there; the public port serves the public API', async () => {
  const dataDir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'relay-internal-'));
  const { ports: [port, grpcPort, internalPort], proc } = await h.startOnFreePorts('relay', 3,
    ([p, g, i]) => ['--port', p, '--grpc-port', g, '--internal-grpc-port', i, '--data-dir', dataDir],
    'relay ready');
  const server = { wsPort: port, httpPort: port, grpcPort, dataDir, proc };
  assert.match(proc.log(), new RegExp(`node link and admin gRPC on 127\\.0\\.0\\.1:${internalPort}`));
  const adminToken = fs.readFileSync(path.join(dataDir, 'admin.token'), 'utf8').trim();
  const onPublic = await unary(stub(admin.Admin, grpcPort), 'ListApps', {}, adminToken);
  assert.strictEqual(onPublic.code, status.UNIMPLEMENTED, 'no admin API on the public port');
  const nodeToken = fs.readFileSync(path.join(dataDir, 'node.token'), 'utf8').trim();
  const linkOnPublic = await attach(grpcPort, nodeToken);
  assert.strictEqual(linkOnPublic.code, status.UNIMPLEMENTED, 'no node link on the public port');
  const onInternal = await unary(stub(admin.Admin, internalPort), 'ListApps', {}, adminToken);
  assert.strictEqual(onInternal.code, status.OK);
  assert.deepStrictEqual(onInternal.res.apps.map((a) => a.id), [h.APP.id]);
  // relayctl pointed at the internal port works as before.
  const r = await h.relayctl({ ...server, grpcPort: internalPort }, ['nodes', 'list', '--json']);
  assert.strictEqual(r.code, 0, r.stderr);
  assert.deepStrictEqual(JSON.parse(r.stdout).nodes.map((n) => n.node_id), ['embedded']);
  await assertServes(server);
});

test('a data plane needs a node credential; relayctl issues one bound to its id and revoking it cuts the node off', async () => {
  const first = await h.startSplit();
  // Without a credential: refused, and the data plane says why (once).
  const { ports: [bare], proc: bareDp } = await h.startOnFreePorts('relay-dataplane', 1,
    ([p]) => ['--port', p, '--control-plane', `127.0.0.1:${first.grpcPort}`, '--node-id', 'bare'],
    'dataplane ready');
  await h.waitFor(() => /refused this node: missing node credential/.test(bareDp.log()), 10000, 'refusal logged');
  assert.ok(bare > 0);
  // A credential bound to edge-1.
  const created = await h.relayctl(first, ['node-tokens', 'create', '--name', 'edge-1', '--node-id', 'edge-1', '--json']);
  assert.strictEqual(created.code, 0, created.stderr);
  const { token, secret } = JSON.parse(created.stdout);
  assert.match(secret, /^rln_[0-9a-f]{48}$/);
  const listed = await h.relayctl(first, ['node-tokens', 'list', '--json']);
  assert.ok(!listed.stdout.includes(secret), 'the list never shows a token');
  const file = path.join(first.dataDir, 'edge-1.token');
  fs.writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  // Presented by another node id: refused.
  const { proc: wrongDp } = await h.startOnFreePorts('relay-dataplane', 1,
    ([p]) => ['--port', p, '--control-plane', `127.0.0.1:${first.grpcPort}`, '--node-id', 'edge-2', '--node-token-file', file],
    'dataplane ready');
  await h.waitFor(() => /refused this node: credential .* may attach node 'edge-1' only/.test(wrongDp.log()), 10000, 'binding refusal');
  // By edge-1: attached and serving.
  const { ports: [edgePort], proc: edge } = await h.startOnFreePorts('relay-dataplane', 1,
    ([p]) => ['--port', p, '--control-plane', `127.0.0.1:${first.grpcPort}`, '--node-id', 'edge-1', '--node-token-file', file],
    'dataplane ready');
  await h.waitFor(() => edge.log().includes('attached to control plane'), 10000, 'edge-1 attached');
  await assertServes({ ...first, wsPort: edgePort });
  const nodes = async () => JSON.parse((await h.relayctl(first, ['nodes', 'list', '--json'])).stdout).nodes.map((n) => n.node_id).sort();
  assert.deepStrictEqual(await nodes(), ['edge-1', 'n1']);
  // Revoked: cut off at once and refused on every retry.
  const revoked = await h.relayctl(first, ['node-tokens', 'revoke', token.id]);
  assert.strictEqual(revoked.code, 0, revoked.stderr);
  await h.waitFor(async () => (await nodes()).join() === 'n1', 10000, 'edge-1 withdrawn');
  await h.waitFor(() => /refused this node: (node credential revoked|invalid node credential)/.test(edge.log()), 10000, 'revocation logged');
  assertAlive(first.cp, 'relay-controlplane');
  await assertServes(first);
});
