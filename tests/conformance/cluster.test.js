// Several real data plane processes under one control plane, with pusher-js clients spread over
// them: presence across nodes, a hung node (SIGSTOP) and a killed node (SIGKILL) leaving the
// roster, the hung node coming back, a drain, and the cluster-wide connection limit.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');

after(h.stopAll);

async function member(server, id, channel) {
  const c = h.client(server, h.authOptions(server, () => ({ user_id: id })));
  const ch = c.subscribe(channel);
  const { data } = await h.once(ch, 'pusher:subscription_succeeded');
  return { c, ch, members: data };
}

test('a hung data plane is withdrawn, then re-attaches; a killed one is withdrawn', async () => {
  const cp = await h.startSplit(['--node-timeout-ms', '2000']);
  const n2 = await h.addDataPlane(cp, 'n2');
  const n3 = await h.addDataPlane(cp, 'n3');
  const a = await member(cp, 'ada', 'presence-cl');   // on n1
  const b = await member(n2, 'bob', 'presence-cl');   // on n2
  const c = await member(n3, 'cy', 'presence-cl');    // on n3
  try {
    assert.strictEqual(c.members.count, 3);
    // SIGSTOP n2: detected by silence, bob leaves everyone's roster exactly once.
    const removed = h.once(a.ch, 'pusher:member_removed', 15000);
    n2.dp.child.kill('SIGSTOP');
    assert.strictEqual((await removed).data.id, 'bob');
    assert.strictEqual(a.ch.members.count, 2);
    // SIGCONT: n2 re-attaches with its snapshot; bob, still connected to it, is back.
    const back = h.once(a.ch, 'pusher:member_added', 20000);
    n2.dp.child.kill('SIGCONT');
    assert.strictEqual((await back).data.id, 'bob');
    // SIGKILL n3: its stream breaks at once; cy leaves.
    const gone = h.once(a.ch, 'pusher:member_removed', 15000);
    n3.dp.child.kill('SIGKILL');
    assert.strictEqual((await gone).data.id, 'cy');
    // Publishing still reaches the live nodes.
    const got = h.once(b.ch, 'after');
    await h.sdk(cp).trigger('presence-cl', 'after', 1);
    assert.strictEqual((await got).data, 1);
  } finally { a.c.disconnect(); b.c.disconnect(); c.c.disconnect(); }
});

test('draining a node closes its clients with 4200 and every leave is announced', async () => {
  const cp = await h.startSplit();
  const n2 = await h.addDataPlane(cp, 'n2');
  const a = await member(cp, 'stay', 'presence-dr');
  const b = await member(n2, 'move', 'presence-dr');
  try {
    const removed = h.once(a.ch, 'pusher:member_removed', 15000);
    const closed = new Promise((resolve) => b.c.connection.bind('error', resolve));
    const r = await h.relayctl(cp, ['nodes', 'drain', 'n2', '--window', '1s']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual((await closed).data.code, 4200);
    assert.strictEqual((await removed).data.id, 'move');
  } finally { a.c.disconnect(); b.c.disconnect(); }
});

test('limits.max_connections counts the whole cluster: a third client on either node gets 4004', async () => {
  // Debug logs show when a data plane learns the other nodes' connections.
  const debug = { RELAY_LOG_LEVEL: 'debug' };
  const cp = await h.startSplit([], debug);
  const n2 = await h.addDataPlane(cp, 'n2', debug);
  const r = await h.relayctl(cp, ['apps', 'update', 'app-id', '--max-connections', '2']);
  assert.strictEqual(r.code, 0, r.stderr);
  const a = h.client(cp);   // on n1
  const b = h.client(n2);   // on n2
  const clients = [a, b];
  try {
    await Promise.all([h.once(a.connection, 'connected'), h.once(b.connection, 'connected')]);
    // One connection on each node: under the limit locally. Wait until each node has been told
    // about the other's connection (pushed by the control plane within about 100 ms).
    const told = (node) => node.dp.log().includes('app app-id: 1 connection(s) on other nodes');
    await h.waitFor(() => told(cp) && told(n2), 5000, 'connection totals on both nodes');
    for (const server of [cp, n2]) {
      const c = h.client(server);
      clients.push(c);
      const { data } = await h.once(c.connection, 'error');
      assert.strictEqual(data.error.data.code, 4004);
      assert.match(data.error.data.message, /over connection quota/);
    }
    assert.strictEqual(a.connection.state, 'connected');
    assert.strictEqual(b.connection.state, 'connected');
  } finally { clients.forEach((c) => c.disconnect()); }
});
