// Failover of control plane replicas (issue #14), through the real binaries (lib/replicas.js: 3
// etcd members, 3 relay-controlplane replicas, 3 relay-dataplane) with pusher-js clients and a
// publisher of sequence-numbered triggers (250/s, load-balanced over the replicas, retrying
// refusals, firing through every fault):
// - presence: members on every data plane see no `member_removed` through a SIGKILL of the
//   leader and a SIGSTOP/SIGCONT of the next one, and a member joining after each failover gets
//   the whole roster;
// - SIGKILL of one etcd member (the raft leader): no visible effect;
// - loss of etcd quorum (2 of 3 members killed): every replica refuses with 503, no false 2xx,
//   no client dropped, and triggers are accepted again once the members are back.
// Each prints the time from the fault to the first trigger accepted that was sent after it
// (`# scenario: accepted_again_ms=...`), for docs/scaling.md. RELAY_TEST_LEASE_TTL sets the
// leader's lease (default 2 s).
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');
const etcd = require('./lib/etcd');
const {
  LEASE_TTL_S, ready, rawTrigger, readyReplicas, theLeader, assertDelivered, flush, stopProcess, killProcess,
  startReplicated, steady, report,
} = require('./lib/replicas');

after(async () => { await h.stopAll(); await etcd.stopAll(); });

// Stops the publisher, flushes every subscriber and checks every 2xx reached each exactly once
// and no client connection changed state.
async function settle(cps, channel, subs, got, pub) {
  await pub.stop();
  await flush(cps, channel, subs.map((s) => s.ch));
  subs.forEach((s, i) => assertDelivered(got[i], pub, `subscriber ${i}`));
  for (const s of subs) assert.deepStrictEqual(s.states, [], 'a client connection changed state');
}

// The user ids of a pusher-js presence Members object.
function ids(members) {
  const out = [];
  members.each((m) => out.push(m.id));
  return out.sort();
}

test('presence across leader failover: no spurious member_removed, a late joiner gets every member', async () => {
  const channel = 'presence-failover';
  const { cps, dps, subs } = await startReplicated('failover-seq', { perNode: 1 });
  const members = [];
  let step = 'joining';
  try {
    for (const [i, node] of dps.entries()) {
      for (const k of ['a', 'b']) {
        const m = await h.join(node, `u${i + 1}${k}`, channel);
        members.push({ ...m, events: h.record(m.ch), states: h.states(m.c) });
      }
    }
    const everyone = members.map((m) => m.ch);
    // Every member sees all six before the fault (the last joiner's roster says so).
    assert.strictEqual(members[members.length - 1].members.count, 6);
    step = 'publishing';
    const { got, pub } = await steady(cps, subs, 'failover-seq');
    const expected = members.map((m) => m.members.me.id);
    const late = [];

    // SIGKILL of the leader.
    const leader = await theLeader(cps);
    const killedAt = await killProcess(leader.proc.child);
    leader.alive = false;
    await h.waitFor(() => pub.firstSentAfter(killedAt), 20000, 'a trigger accepted after the kill');
    const killMs = pub.recoveredMs(killedAt);
    // The bound: a follower ends a dead leader's lease at once (replica.h).
    assert.ok(killMs < 2000, `accepted again ${killMs} ms after the SIGKILL`);
    await theLeader(cps.filter((c) => c.alive), 20000);
    step = 'late1';
    const j1 = await h.join(dps[0], 'late1', channel);
    late.push(j1);
    assert.deepStrictEqual(ids(j1.members), [...expected, 'late1'].sort(), 'roster after the SIGKILL');

    // SIGSTOP of the next leader past its lease, a late joiner, then SIGCONT.
    const second = await theLeader(cps.filter((c) => c.alive));
    second.alive = false;
    const stoppedAt = await stopProcess(second.proc.child);
    const rest = cps.filter((c) => c.alive);
    await theLeader(rest, 20000);
    await h.waitFor(() => pub.firstSentAfter(stoppedAt), 20000, 'a trigger accepted after the stop');
    const stopMs = pub.recoveredMs(stoppedAt);
    step = 'late2';
    const j2 = await h.join(dps[1], 'late2', channel);
    late.push(j2);
    assert.deepStrictEqual(ids(j2.members), [...expected, 'late1', 'late2'].sort(), 'roster after the SIGSTOP');
    await h.waitFor(() => Date.now() - stoppedAt > (LEASE_TTL_S + 1) * 1000, 10000, 'past the lease');
    second.proc.child.kill('SIGCONT');
    second.alive = true;
    await h.waitFor(async () => (await ready(second.httpPort)).status === 503 &&
      (await readyReplicas(rest)).length === 1, 10000, 'the woken leader following');
    await pub.more(100, 20000, '100 triggers after the SIGCONT');

    // Everything the members were sent has arrived once a marker has; a third late joiner on
    // the last node still gets the whole roster.
    await flush(cps, channel, [...everyone, j1.ch, j2.ch]);
    step = 'late3';
    const j3 = await h.join(dps[2], 'late3', channel);
    late.push(j3);
    assert.deepStrictEqual(ids(j3.members), [...expected, 'late1', 'late2', 'late3'].sort(), 'roster at the end');
    await flush(cps, channel, [...everyone, j1.ch, j2.ch, j3.ch]);
    for (const [i, m] of members.entries()) {
      const who = m.members.me.id;
      const joinedLater = [...expected.slice(i + 1), 'late1', 'late2', 'late3'];
      assert.deepStrictEqual(m.events.filter((e) => e.name === 'pusher_internal:member_removed' ||
        e.name === 'pusher:member_removed'), [], `${who} saw a member leave`);
      assert.deepStrictEqual(m.events.filter((e) => e.name === 'pusher:member_added').map((e) => e.data.id),
        joinedLater, `${who}'s member_added (once per later joiner)`);
      assert.deepStrictEqual(m.states, [], `${who}'s connection changed state`);
      assert.strictEqual(m.ch.members.count, 9, `${who}'s roster`);
    }
    await settle(cps, 'failover-seq', subs, got, pub);
    report(`presence, SIGKILL of the leader (lease ${LEASE_TTL_S} s)`, { accepted_again_ms: killMs, rate: pub.steadyRate });
    report(`presence, SIGSTOP of the leader (lease ${LEASE_TTL_S} s)`, {
      accepted_again_ms: stopMs, accepted: pub.accepted.length, refusals: pub.refusals.length, unknown: pub.unknown.length,
    });
  } catch (e) {
    e.message = `${step}: ${e.message}\n${dps.map((d) => d.dp.log().slice(-1500)).join('\n---\n')}`;
    throw e;
  } finally {
    subs.forEach((s) => s.c.disconnect());
    members.forEach((m) => m.c.disconnect());
  }
});

test('SIGKILL of one etcd member (the raft leader): no visible effect', async () => {
  const { cluster, cps, subs } = await startReplicated('etcd-member', { perNode: 1 });
  try {
    const { got, pub } = await steady(cps, subs, 'etcd-member');
    const leader = await theLeader(cps);
    const victim = await cluster.raftLeader();
    assert.ok(victim >= 0, 'no etcd raft leader');
    // Followers refuse by design (a load balancer would not send to them): count the leader's.
    const leaderRefusals = () => pub.refusals.filter((r) => r.port === leader.httpPort).length;
    const refusalsBefore = leaderRefusals();
    const killedAt = Date.now();
    await cluster.kill(victim);
    await pub.more(500, 20000, '500 triggers after the kill');  // 2 s at 250/s
    const until = Date.now();
    const gapMs = pub.longestGap(killedAt, until);
    const refusals = leaderRefusals() - refusalsBefore;
    const stillLeader = (await readyReplicas(cps)).includes(leader);
    await cluster.restart(victim);
    await settle(cps, 'etcd-member', subs, got, pub);
    report(`SIGKILL of one etcd member (lease ${LEASE_TTL_S} s)`, {
      longest_gap_ms: gapMs, refusals, unknown: pub.unknown.length, same_leader: stillLeader, rate: pub.steadyRate,
      rate_after: Math.round(pub.rate(killedAt, until)),
    });
    assert.ok(stillLeader, 'the control plane leader changed');
    assert.strictEqual(refusals, 0, 'the leader refused triggers');
    assert.ok(gapMs < 1000, `no trigger accepted for ${gapMs} ms`);
  } finally { subs.forEach((s) => s.c.disconnect()); }
});

test('loss of etcd quorum: every replica refuses with 503, no false 2xx, no client dropped, service resumes', async () => {
  const { cluster, cps, subs, dps } = await startReplicated('quorum', { perNode: 1 });
  try {
    const { got, pub } = await steady(cps, subs, 'quorum');
    const first = await cluster.raftLeader();
    const lost = [first, (first + 1) % 3];
    const lostAt = Date.now();
    await Promise.all(lost.map((i) => cluster.kill(i)));
    // The leader cannot renew its lease: it stops acting within the lease (its own clock), and
    // no replica can be elected without quorum.
    await h.waitFor(async () => {
      const rs = await Promise.all(cps.map((cp) => rawTrigger(cp.httpPort, 'quorum', 'probe', {}, 1000)));
      return rs.every((r) => r.status === 503);
    }, (LEASE_TTL_S + 5) * 1000, 'every replica refusing');
    const refusingMs = Date.now() - lostAt;
    const refusingAt = Date.now();
    // Refused throughout: the publisher keeps firing for two more lease lengths.
    await h.waitFor(() => Date.now() - refusingAt > 2 * LEASE_TTL_S * 1000, 10000, 'two lease lengths of refusals');
    const falseOk = pub.accepted.filter((a) => a.sentAt >= refusingAt);
    assert.deepStrictEqual(falseOk, [], 'a trigger accepted without quorum');
    for (const cp of cps) {
      const r = await rawTrigger(cp.httpPort, 'quorum', 'probe', {});
      assert.strictEqual(r.status, 503, JSON.stringify(r));
      assert.strictEqual(r.retryAfter, '1');
    }
    // The members come back on their data dirs.
    const restartAt = Date.now();
    await Promise.all(lost.map((i) => cluster.restart(i)));
    const quorumAt = Date.now();
    await h.waitFor(() => pub.firstSentAfter(quorumAt), 30000, 'a trigger accepted after quorum returned');
    const resumeMs = pub.recoveredMs(quorumAt);
    await pub.more(200, 20000, '200 triggers after the recovery');
    await theLeader(cps, 15000);
    await settle(cps, 'quorum', subs, got, pub);
    for (const { dp } of dps) assert.strictEqual(dp.child.exitCode, null);
    report(`loss of etcd quorum (lease ${LEASE_TTL_S} s)`, {
      all_refusing_after_ms: refusingMs, last_2xx_after_loss_ms: Math.max(0, ...pub.accepted.filter((a) => a.at >= lostAt && a.at < restartAt).map((a) => a.at - lostAt)),
      members_restarted_in_ms: quorumAt - restartAt, accepted_again_after_quorum_ms: resumeMs,
      refusals: pub.refusals.length, unknown: pub.unknown.length, accepted: pub.accepted.length, rate: pub.steadyRate,
    });
  } finally { subs.forEach((s) => s.c.disconnect()); }
});
