// Control plane replicas (issue #14): 3 real etcd members, 3 relay-controlplane replicas with
// --etcd-endpoints, 3 relay-dataplane with --control-plane A,B,C, pusher-js subscribers on each
// data plane, and a publisher that sends sequence-numbered triggers (250/s) with the `pusher` SDK
// to the replicas' HTTP ports in turn, as a load balancer would, moving on from a 503 or a failed
// connection, and firing on through every fault (lib/replicas.js). Checks: exactly one leader,
// followers refuse (503 + Retry-After, /ready 503); after a SIGKILL of the leader, and after a
// SIGSTOP past its lease and a SIGCONT, no client connection changes state, a follower takes
// over (the bound is measured and printed), every trigger answered 2xx reaches every subscriber
// exactly once, and the woken old leader sends nothing and refuses the API.
// failover.test.js covers presence, etcd member loss and etcd quorum loss.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const h = require('./lib/harness');
const etcd = require('./lib/etcd');
const {
  LEASE_TTL_S, ready, rawTrigger, readyReplicas, theLeader, seqs, assertDelivered, flush, stopProcess,
  killProcess, startReplicated, steady, report,
} = require('./lib/replicas');

const PROTO_ROOT = path.resolve(__dirname, '../../proto');
const loadRelay = (file) => grpc.loadPackageDefinition(protoLoader.loadSync(path.join(PROTO_ROOT, file),
  { includeDirs: [PROTO_ROOT], keepCase: true, longs: String, enums: String, defaults: true })).relay.v1;
const { Health } = grpc.loadPackageDefinition(protoLoader.loadSync(path.join(__dirname, 'lib/proto/health.proto'),
  { keepCase: true, enums: String, defaults: true })).grpc.health.v1;
const stubs = [];
const stubOf = (Service, port) => {
  const s = new Service(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  stubs.push(s);
  return s;
};

after(async () => { stubs.forEach((s) => s.close()); await h.stopAll(); await etcd.stopAll(); });

// relay_controlplane_dead_leaders_revoked_total of a replica (its /metrics).
async function revokedCount(cp) {
  const text = await (await fetch(`http://127.0.0.1:${cp.metricsPort}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
  const m = text.match(/^relay_controlplane_dead_leaders_revoked_total (\d+)/m);
  assert.ok(m, 'no relay_controlplane_dead_leaders_revoked_total');
  return Number(m[1]);
}

// One unary gRPC call, bounded: resolves with { err, res }.
function unary(stub, method, req, md = new grpc.Metadata()) {
  return new Promise((resolve) => {
    stub[method](req, md, { deadline: Date.now() + 5000 }, (err, res) => resolve({ err, res }));
  });
}

// NodeLink.Attach with the node credential: resolves with the status and trailing metadata the
// replica ended it with.
function attach(port, token) {
  const { NodeLink } = loadRelay('relay/v1/node_link.proto');
  const md = new grpc.Metadata();
  md.set('authorization', `Bearer ${token}`);
  const call = stubOf(NodeLink, port).Attach(md, { deadline: Date.now() + 5000 });
  return new Promise((resolve) => {
    call.on('data', () => {});
    call.on('error', () => {});
    call.on('status', (st) => resolve(st));
    call.write({ hello: { node_id: 'probe', address: '127.0.0.1:1' } });
  });
}

test('exactly one replica leads; followers refuse the API with 503 + Retry-After and are not ready', async () => {
  const { cps, dps, subs } = await startReplicated('one-leader');
  try {
    const leader = await theLeader(cps);
    for (const cp of cps.filter((c) => c !== leader)) {
      // A follower learns who leads from an etcd watch: within moments of the leader's /ready.
      let r;
      await h.waitFor(async () => {
        r = await ready(cp.httpPort);
        return r.status === 503 && r.body.includes(`follower (leader: 127.0.0.1:${leader.grpcPort})`);
      }, 5000, 'the follower naming the leader').catch((e) => { throw new Error(`${e.message}: ${JSON.stringify(r)}`); });
      const t = await rawTrigger(cp.httpPort, 'one-leader', 'x', {});
      assert.strictEqual(t.status, 503, JSON.stringify(t));
      assert.strictEqual(t.retryAfter, '1');
      assert.match(JSON.parse(t.body).error, /follower/);
    }
    // gRPC: health NOT_SERVING, the public API UNAVAILABLE, the node link refused naming the
    // leader in the `relay-leader` trailer; the leader SERVING.
    const token = fs.readFileSync(path.join(cps[0].dataDir, 'node.token'), 'utf8').trim();
    const { Channels } = loadRelay('relay/v1/public.proto');
    for (const cp of cps) {
      // The health status follows /ready on the next refresh (every 100 ms).
      let hc;
      await h.waitFor(async () => {
        hc = await unary(stubOf(Health, cp.grpcPort), 'Check', { service: '' });
        return !hc.err && hc.res.status === (cp === leader ? 'SERVING' : 'NOT_SERVING');
      }, 5000, `gRPC health of the ${cp === leader ? 'leader' : 'follower'}`).catch((e) => {
        throw new Error(`${e.message}: ${hc.err || hc.res.status}`);
      });
      if (cp === leader) continue;
      const md = new grpc.Metadata();
      md.set('x-relay-key', h.APP.key);
      md.set('x-relay-secret', h.APP.secret);
      const t = await unary(stubOf(Channels, cp.grpcPort), 'Trigger',
        { app: h.APP.id, channels: ['one-leader'], name: 'x', data: '{}' }, md);
      assert.strictEqual(t.err && t.err.code, grpc.status.UNAVAILABLE, String(t.err));
      assert.match(t.err.details, /follower/);
      const st = await attach(cp.grpcPort, token);
      assert.strictEqual(st.code, grpc.status.UNAVAILABLE, st.details);
      assert.deepStrictEqual(st.metadata.get('relay-leader'), [`127.0.0.1:${leader.grpcPort}`]);
    }
    // Every data plane attached to the leader (the followers sent them there).
    for (const { dp } of dps) assert.match(dp.log(), /attached to control plane/);
    // The attaches above made each follower check the leader's port: it listens, so nobody
    // ended its lease and it still leads.
    for (const cp of cps) assert.strictEqual(await revokedCount(cp), 0);
    assert.deepStrictEqual(await readyReplicas(cps), [leader]);
    const got = subs.map((s) => seqs(s.ch));
    assert.strictEqual((await rawTrigger(leader.httpPort, 'one-leader', 'seq', { seq: 0 })).status, 200);
    await flush(cps, 'one-leader', subs.map((s) => s.ch));
    for (const g of got) assert.deepStrictEqual(g, [0]);
  } finally { subs.forEach((s) => s.c.disconnect()); }
});

test('SIGKILL of the leader: a follower takes over, no client is dropped, every 2xx delivered once', async () => {
  const { cps, subs } = await startReplicated('kill-leader');
  try {
    const { got, pub } = await steady(cps, subs, 'kill-leader');
    const leader = await theLeader(cps);
    const killedAt = await killProcess(leader.proc.child);
    leader.alive = false;
    await h.waitFor(() => pub.firstSentAfter(killedAt), 20000, 'a trigger accepted after the kill');
    const failoverMs = pub.recoveredMs(killedAt);
    await pub.more(200, 20000, '200 triggers after the recovery');
    await pub.stop();
    const next = await theLeader(cps);
    assert.notStrictEqual(next, leader);
    // A follower found the dead leader's port refusing connections and ended its lease, rather
    // than waiting for it to run out.
    let revoked = 0;
    for (const cp of cps.filter((c) => c.alive)) revoked += await revokedCount(cp);
    await flush(cps, 'kill-leader', subs.map((s) => s.ch));
    subs.forEach((s, i) => assertDelivered(got[i], pub, `subscriber ${i}`));
    for (const s of subs) assert.deepStrictEqual(s.states, [], 'a client connection changed state');
    report(`SIGKILL of the leader (lease ${LEASE_TTL_S} s)`, {
      accepted_again_ms: failoverMs, rate: pub.steadyRate,
      refusals: pub.refusals.length, connection_errors: pub.connectionErrors,
      accepted: pub.accepted.length, unknown: pub.unknown.length, leases_ended_early: revoked,
    });
    assert.strictEqual(revoked, 1, 'leases of the dead leader ended by a follower');
    // The bound (goal: under 1 s), whatever the lease.
    assert.ok(failoverMs < 2000, `failover took ${failoverMs} ms`);
  } finally { subs.forEach((s) => s.c.disconnect()); }
});

test('SIGSTOP of the leader past its lease, then SIGCONT: a follower takes over; the old leader sends nothing and follows', async () => {
  const { cps, subs } = await startReplicated('stop-leader');
  try {
    const { got, pub } = await steady(cps, subs, 'stop-leader');
    const leader = await theLeader(cps);
    const others = cps.filter((c) => c !== leader);
    leader.alive = false;  // not asked by flush/readiness polls while stopped
    const stoppedAt = await stopProcess(leader.proc.child);
    // A follower leads, with the data planes attached to it, while the old one is still stopped.
    await theLeader(others, 20000);
    await h.waitFor(() => pub.firstSentAfter(stoppedAt), 20000, 'a trigger accepted after the stop');
    const failoverMs = pub.recoveredMs(stoppedAt);
    await pub.more(50, 20000, '50 triggers while the old leader is stopped');
    // Past its lease by a margin, then woken while the publisher keeps firing at every replica.
    await h.waitFor(() => Date.now() - stoppedAt > (LEASE_TTL_S + 2) * 1000, 10000, 'past the lease');
    leader.proc.child.kill('SIGCONT');
    leader.alive = true;
    const contAt = Date.now();
    // Its first answer after waking is already a refusal (its lease is over by its own clock).
    const first = await rawTrigger(leader.httpPort, 'stop-leader', 'stray', {});
    assert.strictEqual(first.status, 503, JSON.stringify(first));
    const firstRefusalMs = Date.now() - contAt;
    // It follows whoever leads now (on a loaded machine the lease may have moved on again).
    let lastSeen = '';
    await h.waitFor(async () => {
      const r = await ready(leader.httpPort);
      const now = await readyReplicas(others);
      lastSeen = `${r.status} ${r.body}; ready: ${now.map((c) => c.grpcPort)}`;
      return r.status === 503 && now.length === 1 &&
        r.body.includes(`follower (leader: 127.0.0.1:${now[0].grpcPort})`);
    }, 10000, 'the woken old leader reporting itself a follower of the new one').catch((e) => {
      throw new Error(`${e.message}: last /ready ${lastSeen}\n${leader.proc.log().slice(-3000)}`);
    });
    const namedAt = Date.now();
    const t = await rawTrigger(leader.httpPort, 'stop-leader', 'stray', {});
    assert.strictEqual(t.status, 503, JSON.stringify(t));
    await pub.more(100, 20000, '100 triggers after the SIGCONT');
    await pub.stop();
    await flush(cps, 'stop-leader', subs.map((s) => s.ch));
    // The requests sent to the leader once it was stopped waited inside it and were refused by
    // it after SIGCONT, or timed out: none of them may reach a client. (One sent just before
    // the stop may have been delivered and not answered: an unknown outcome, allowed.)
    const fromStopped = new Set(pub.unknown.filter((u) => u.port === leader.httpPort && u.sentAt >= stoppedAt)
      .map((u) => u.seq));
    subs.forEach((s, i) => {
      assertDelivered(got[i], pub, `subscriber ${i}`);
      assert.deepStrictEqual(got[i].filter((seq) => fromStopped.has(seq)), [], 'the woken old leader delivered');
    });
    for (const s of subs) assert.deepStrictEqual(s.states, [], 'a client connection changed state');
    assert.strictEqual((await readyReplicas(cps)).length, 1);
    assert.match(leader.proc.log(), /no longer the leader/);
    report(`SIGSTOP of the leader (lease ${LEASE_TTL_S} s)`, {
      accepted_again_ms: failoverMs, first_refusal_after_cont_ms: firstRefusalMs,
      named_new_leader_ms: namedAt - contAt, rate: pub.steadyRate, refusals: pub.refusals.length, accepted: pub.accepted.length,
      unknown: pub.unknown.length, sent_to_stopped: fromStopped.size,
    });
  } finally { subs.forEach((s) => s.c.disconnect()); }
});

test('bad replica flags: exit 2 with a message naming the flag', () => {
  const { spawnSync } = require('node:child_process');
  const dataDir = h.tempDir();
  const run = (bin, args) => spawnSync(path.join(h.BIN, bin), args, { encoding: 'utf8', timeout: 10000 });
  for (const [bin, args, flag] of [
    ['relay-controlplane', ['--data-dir', dataDir, '--etcd-endpoints', 'no-port'], '--etcd-endpoints'],
    ['relay-controlplane', ['--data-dir', dataDir, '--etcd-endpoints', '127.0.0.1:1', '--etcd-lease-ttl', '0'], '--etcd-lease-ttl'],
    ['relay-controlplane', ['--data-dir', dataDir, '--etcd-endpoints', '127.0.0.1:1', '--etcd-prefix', 'relay/'], '--etcd-prefix'],
    ['relay-controlplane', ['--data-dir', dataDir, '--host', '0.0.0.0', '--etcd-endpoints', '127.0.0.1:1'], '--advertise-grpc'],
    ['relay-dataplane', ['--control-plane', '127.0.0.1:1,,127.0.0.1:2'], '--control-plane'],
  ]) {
    const r = run(bin, args);
    assert.strictEqual(r.status, 2, `${bin} ${args.join(' ')}: ${r.stderr}`);
    assert.ok(r.stderr.includes(flag), r.stderr);
  }
});
