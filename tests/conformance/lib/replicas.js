// Test harness for control plane replicas (issue #14), shared by replicas.test.js and
// failover.test.js: 3 real etcd members, 3 relay-controlplane replicas with --etcd-endpoints,
// 3 relay-dataplane with --control-plane A,B,C and pusher-js subscribers on each, a load-balancer
// style publisher of sequence-numbered triggers, and the checks on what the subscribers got.
// Every wait is bounded.
//
// The leader's lease is RELAY_TEST_LEASE_TTL seconds (default 2, the product default), so the
// failover bounds can be measured with another one without editing the tests.
//
// startReplicated seeds the etcd store (app, node credential) with one control plane and copies
// its data dir (admin token, node.token) to every replica.
'use strict';
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const h = require('./harness');
const etcd = require('./etcd');

const LEASE_TTL_S = Number(process.env.RELAY_TEST_LEASE_TTL || 2);
const pause = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// GET /ready: { status, body } or { error }.
function ready(port, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/ready', timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error) => resolve({ error }));
  });
}

const { rawTrigger } = h;

// The replicas whose /ready answers 200 (the leader, once its data planes are attached).
async function readyReplicas(cps) {
  const rs = await Promise.all(cps.map((cp) => (cp.alive ? ready(cp.httpPort) : { status: 0 })));
  return cps.filter((cp, i) => rs[i].status === 200);
}

async function theLeader(cps, timeoutMs = 15000) {
  let leader = null;
  await h.waitFor(async () => {
    const r = await readyReplicas(cps);
    leader = r.length === 1 ? r[0] : null;
    return leader !== null;
  }, timeoutMs, 'exactly one ready replica');
  return leader;
}

// Sends triggers 0, 1, 2... on `channel` through the `pusher` SDK at `rate` per second (at most
// `lanes` requests in flight; each lane sends its next trigger once the previous one was
// answered), to the replicas in turn as a load balancer would; each seq is retried on the next
// replica until one answers 2xx. A 503 that refused before sending anything, or a refused
// connection, moves on to the next replica at once, and after a whole round of refusals waits
// 30 ms (pacing, not synchronization); a failed connection also
// leaves the replica out for 2 s, as a load balancer's passive health check would. A request
// whose outcome is unknown (a 503 saying the event "may have reached" some subscribers: sent,
// but a data plane did not ack it; a timeout or a reset after it was sent) may or may not have
// been published: its seq is `unknown` (with the replica it went to and when) and the next
// trigger gets a new seq, since no Pusher API has an idempotency key.
// p.accepted: [{ seq, sentAt, at, lane }] in the order answered.
function publisher(cps, channel, { rate = 250, lanes = 16 } = {}) {
  const sdks = new Map();
  const sdkFor = (cp) => {
    if (!sdks.has(cp)) {
      sdks.set(cp, new (require('pusher'))({
        appId: h.APP.id, key: h.APP.key, secret: h.APP.secret, host: '127.0.0.1',
        port: String(cp.httpPort), useTLS: false, timeout: 1000,
      }));
    }
    return sdks.get(cp);
  };
  const p = { accepted: [], unknown: [], refusals: [], connectionErrors: 0, stopped: false, startedAt: Date.now() };
  let turn = 0;
  let nextSeq = 0;
  let slot = Date.now();
  const interval = 1000 / rate;
  const ejected = new Map();  // replica -> until when it is skipped
  const lane = async (laneNo) => {
    while (!p.stopped) {
      const now = Date.now();
      // A lane that fell behind (a busy machine) catches up by up to 200 ms of slots.
      const at = Math.max(slot, now - 200);
      slot = at + interval;
      if (at > now) await pause(at - now);
      if (p.stopped) break;
      const seq = nextSeq++;
      for (let attempt = 1; ; attempt++) {
        let cp = cps[turn++ % cps.length];
        for (let k = 0; k < cps.length && (ejected.get(cp) || 0) > Date.now(); k++) cp = cps[turn++ % cps.length];
        const sentAt = Date.now();
        let outcome;
        try {
          await sdkFor(cp).trigger(channel, 'seq', { seq });
          outcome = 'ok';
        } catch (e) {
          outcome = e;
        }
        if (outcome === 'ok') {
          p.accepted.push({ seq, sentAt, at: Date.now(), lane: laneNo });
          break;
        }
        if (outcome.status === 503) {
          if (/may have reached/.test(outcome.body)) {
            p.unknown.push({ seq, port: cp.httpPort, sentAt, why: outcome.body });
            break;
          }
          p.refusals.push({ port: cp.httpPort, at: sentAt, body: outcome.body });
        } else if (outcome.status) {
          p.stopped = true;
          throw new Error(`unexpected HTTP ${outcome.status} from ${cp.httpPort}: ${outcome.body}`);
        } else {
          p.connectionErrors++;
          ejected.set(cp, Date.now() + 2000);
          const cause = outcome.error || outcome;
          if (!/ECONNREFUSED/.test(`${cause.code} ${cause.message}`)) {
            p.unknown.push({ seq, port: cp.httpPort, sentAt, why: `${cause.code || ''} ${cause.message}` });
            break;
          }
        }
        if (p.stopped) break;  // refused: never sent
        // Straight on to the next replica (a follower refuses in a millisecond); after a whole
        // round of refusals (no leader yet), 30 ms of pacing.
        if (attempt % cps.length === 0) await pause(30);
      }
    }
  };
  p.done = Promise.all([...Array(lanes).keys()].map(lane));
  p.done.catch(() => {});  // surfaced by stop()
  p.stop = async () => { p.stopped = true; await p.done; p.stoppedAt = Date.now(); };
  p.count = () => p.accepted.length;
  // Resolves once `n` more triggers are accepted (bounded).
  p.more = async (n, timeoutMs, what) => {
    const target = p.accepted.length + n;
    await h.waitFor(() => p.stopped || p.accepted.length >= target, timeoutMs, what);
    if (p.accepted.length < target) await p.done;  // a lane failed: its error
  };
  // The first trigger accepted that was sent at `t` or later ({ seq, sentAt, at }), or null.
  p.firstSentAfter = (t) => p.accepted.find((a) => a.sentAt >= t) || null;
  // Milliseconds from the fault at `t` to the first trigger accepted that was sent after it.
  p.recoveredMs = (t) => { const a = p.firstSentAfter(t); return a ? a.at - t : null; };
  // The longest time in [from, to] with no trigger accepted (what a caller saw as an outage).
  p.longestGap = (from, to) => {
    let last = from;
    let gap = 0;
    for (const a of p.accepted) {
      if (a.at < from || a.at > to) continue;
      gap = Math.max(gap, a.at - last);
      last = a.at;
    }
    return Math.max(gap, to - last);
  };
  // Accepted triggers per second between two instants.
  p.rate = (from, to) => (p.accepted.filter((a) => a.at >= from && a.at <= to).length * 1000) / Math.max(1, to - from);
  return p;
}

function seqs(channel) {
  const got = [];
  channel.bind('seq', (data) => got.push(typeof data === 'string' ? JSON.parse(data).seq : data.seq));
  return got;
}

// Every seq answered 2xx arrived exactly once, those of one publisher lane in the order they
// were answered; an unknown one at most once; nothing else.
function assertDelivered(got, pub, where) {
  assert.strictEqual(new Set(got).size, got.length, `a duplicate in ${got} (${where})`);
  const accepted = new Set(pub.accepted.map((a) => a.seq));
  const unknown = new Set(pub.unknown.map((u) => u.seq));
  const stray = got.filter((seq) => !accepted.has(seq) && !unknown.has(seq));
  assert.deepStrictEqual(stray, [], `delivered but never sent or refused (${where})`);
  const have = new Set(got);
  const missing = pub.accepted.filter((a) => !have.has(a.seq)).map((a) => a.seq);
  assert.deepStrictEqual(missing, [], `answered 2xx but not delivered (${where})`);
  const laneOf = new Map(pub.accepted.map((a) => [a.seq, a.lane]));
  const lanes = new Set(laneOf.values());
  for (const lane of lanes) {
    assert.deepStrictEqual(got.filter((seq) => laneOf.get(seq) === lane),
      pub.accepted.filter((a) => a.lane === lane).map((a) => a.seq), `lane ${lane} out of order (${where})`);
  }
}

// A marker triggered through whichever replica accepts it, awaited on every subscriber (pusher-js
// channels): every event accepted before it has arrived once it has.
let markers = 0;
async function flush(cps, channel, channels, timeoutMs = 20000) {
  const name = `marker-${++markers}`;
  const got = channels.map((ch) => h.once(ch, name, timeoutMs));
  await h.waitFor(async () => {
    for (const cp of cps.filter((c) => c.alive)) {
      const r = await rawTrigger(cp.httpPort, channel, name, {}, 1000);
      if (r.status === 200) return true;
    }
    return false;
  }, timeoutMs, `marker ${name} accepted`);
  await Promise.all(got);
}

// Whether every thread of process `pid` is stopped (state T in /proc): kill() only queues the
// signal.
function allThreadsStopped(pid) {
  const dir = `/proc/${pid}/task`;
  return fs.readdirSync(dir).every((t) => {
    try { return / T /.test(fs.readFileSync(`${dir}/${t}/stat`, 'utf8').replace(/^.*\)/, ')')); } catch { return true; }
  });
}

// SIGSTOP, resolved once every thread of the process is stopped; returns that instant.
async function stopProcess(child) {
  child.kill('SIGSTOP');
  await h.waitFor(() => allThreadsStopped(child.pid), 5000, `every thread of ${child.pid} stopped`);
  return Date.now();
}

// SIGKILL, resolved once the process is gone; returns that instant.
async function killProcess(child) {
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGKILL');
  await exited;
  return Date.now();
}

// etcd, a seeded data dir copied to 3 replicas, the replicas and 3 data planes, with `perNode`
// pusher-js subscribers of `channel` on each (none when `channel` is null).
async function startReplicated(channel, { perNode = 2, leaseTtl = LEASE_TTL_S } = {}) {
  const cluster = await etcd.startCluster(3);
  const seed = h.tempDir();
  // The seeder makes the default app and node credential in the etcd store the replicas share
  // (its node.token is what the data planes present).
  const { proc: seeder } = await h.startOnFreePorts('relay-controlplane', 2,
    ([p, g]) => ['--port', p, '--grpc-port', g, '--data-dir', seed, '--etcd-endpoints', cluster.endpointsFlag],
    'controlplane ready');
  const exited = new Promise((resolve) => seeder.child.once('exit', resolve));
  seeder.child.kill('SIGTERM');
  await exited;
  fs.rmSync(path.join(seed, 'relay.lock'), { force: true });
  const cps = [];
  for (let i = 0; i < 3; i++) {
    const dataDir = h.tempDir();
    fs.cpSync(seed, dataDir, { recursive: true });
    let args;
    const { ports: [httpPort, grpcPort, metricsPort], proc } = await h.startOnFreePorts('relay-controlplane', 3, ([p, g, m]) => {
      args = ['--port', p, '--grpc-port', g, '--metrics-port', m, '--data-dir', dataDir, '--trigger-rate-limit', '0',
        '--etcd-endpoints', cluster.endpointsFlag, '--etcd-lease-ttl', leaseTtl].map(String);
      return args;
    }, 'controlplane ready');
    cps.push({ httpPort, grpcPort, metricsPort, dataDir, proc, args, alive: true });
  }
  const list = cps.map((cp) => `127.0.0.1:${cp.grpcPort}`).join(',');
  const dps = [];
  for (let i = 1; i <= 3; i++) {
    const { ports: [wsPort], proc: dp } = await h.startOnFreePorts('relay-dataplane', 1,
      ([p]) => ['--port', p, '--control-plane', list, '--node-id', `n${i}`,
        '--node-token-file', path.join(seed, 'node.token')], 'dataplane ready');
    await h.waitFor(() => dp.log().includes('attached to control plane'), 15000, `n${i} attach`);
    dps.push({ wsPort, dp });
  }
  const subs = [];
  if (channel) {
    for (const node of dps) {
      for (let k = 0; k < perNode; k++) {
        const c = h.client(node);
        const ch = c.subscribe(channel);
        await h.once(ch, 'pusher:subscription_succeeded');
        subs.push({ c, ch, node, states: h.states(c) });
      }
    }
  }
  return { cluster, cps, dps, subs, leaseTtl };
}

// Waits for a leader, starts the publisher on the subscribers' channel (their seqs recorded in
// `got`, one array per subscriber) and lets it run for 300 more accepted triggers after a
// warm-up of 50; pub.steadyRate is the rate it reached then (triggers accepted per second),
// printed by the tests rather than asserted: it aims at 250/s and gets 210-270/s here, but a
// 2-core machine shared with builds (load average 7) starves the publisher itself to 120-190/s,
// which says nothing about the server.
async function steady(cps, subs, channel) {
  await theLeader(cps);
  const got = subs.map((s) => seqs(s.ch));
  const pub = publisher(cps, channel);
  await pub.more(50, 15000, '50 triggers (warm-up)');
  const from = Date.now();
  await pub.more(300, 15000, '300 triggers before the fault');
  pub.steadyRate = Math.round(pub.rate(from, Date.now()));
  return { got, pub };
}

// One line of measurements for the test output (and docs/scaling.md).
function report(scenario, fields) {
  console.log(`# ${scenario}: ${Object.entries(fields).map(([k, v]) => `${k}=${v}`).join(' ')}`);
}

module.exports = {
  LEASE_TTL_S, ready, rawTrigger, readyReplicas, theLeader, publisher, seqs, assertDelivered, flush,
  stopProcess, killProcess, allThreadsStopped, startReplicated, steady, report,
};
