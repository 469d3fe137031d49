// The etcd harness (lib/etcd.js) that the control plane replica tests build on: real members on
// free ports that can be killed, stopped, continued and restarted, each wait bounded.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const etcd = require('./lib/etcd');
const { waitFor } = require('./lib/harness');

after(etcd.stopAll);

test('three etcd members: kill the raft leader, pause and restart members', { timeout: 90000 }, async () => {
  const cluster = await etcd.startCluster(3);
  assert.strictEqual(cluster.endpoints.length, 3);
  assert.match(cluster.endpointsFlag, /^127\.0\.0\.1:\d+,127\.0\.0\.1:\d+,127\.0\.0\.1:\d+$/);
  const leader = await cluster.raftLeader();
  assert.ok(leader >= 0, 'a raft leader');

  // SIGKILL the raft leader: the other two elect another and stay healthy.
  await cluster.kill(leader);
  assert.strictEqual(cluster.running(leader), false);
  const rest = [0, 1, 2].filter((i) => i !== leader);
  await waitFor(async () => (await cluster.healthy(rest[0])) && (await cluster.healthy(rest[1])), 10000, 'the two left healthy');
  const next = await cluster.raftLeader();
  assert.ok(rest.includes(next), `a new raft leader among ${rest}: ${next}`);

  // SIGSTOP one of the two left: no quorum, the third reports unhealthy; SIGCONT heals it.
  const other = rest.find((i) => i !== next);
  cluster.stop(other);
  await waitFor(async () => !(await cluster.healthy(next)), 10000, 'no quorum while a member is stopped');
  cluster.cont(other);
  await waitFor(async () => cluster.healthy(next), 10000, 'quorum back after SIGCONT');

  // The killed member comes back on its data dir and ports.
  await cluster.restart(leader);
  assert.ok(await cluster.healthy(leader));
  await cluster.close();
});

test('a single member', { timeout: 30000 }, async () => {
  const cluster = await etcd.startCluster(1);
  assert.strictEqual(cluster.endpoints.length, 1);
  assert.ok(await cluster.healthy(0));
  assert.strictEqual(await cluster.raftLeader(), 0);
  await cluster.close();
});
