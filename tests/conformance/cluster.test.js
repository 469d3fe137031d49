// Several real data plane processes under one control plane, with pusher-js clients spread over
// them: presence across nodes, a hung node (SIGSTOP) and a killed node (SIGKILL) leaving the
// roster, the hung node coming back, a killed node replaced under the same node id, a drain,
// and the cluster-wide connection limit. (cluster-delivery, cluster-presence and
// cluster-restart.test.js cover the rest of the cluster.)
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');

after(h.stopAll);

test('a hung data plane is withdrawn, then re-attaches; a killed one is withdrawn', async () => {
  const cp = await h.startSplit(['--node-timeout-ms', '2000']);
  const n2 = await h.addDataPlane(cp, 'n2');
  const n3 = await h.addDataPlane(cp, 'n3');
  const a = await h.join(cp, 'ada', 'presence-cl');   // on n1
  const b = await h.join(n2, 'bob', 'presence-cl');   // on n2
  const c = await h.join(n3, 'cy', 'presence-cl');    // on n3
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
    // Publishing still reaches the live nodes, once the control plane stops refusing the
    // channels n3 served (503 until n3 re-attaches or its node timeout passes).
    const got = h.once(b.ch, 'after');
    await h.triggerRetrying(cp, 'presence-cl', 'after', 1);
    assert.strictEqual((await got).data, 1);
  } finally { a.c.disconnect(); b.c.disconnect(); c.c.disconnect(); }
});

test('draining a node closes its clients with 4200 and every leave is announced', async () => {
  const cp = await h.startSplit();
  const n2 = await h.addDataPlane(cp, 'n2');
  const a = await h.join(cp, 'stay', 'presence-dr');
  const b = await h.join(n2, 'move', 'presence-dr');
  try {
    const removed = h.once(a.ch, 'pusher:member_removed', 15000);
    const closed = new Promise((resolve) => b.c.connection.bind('error', resolve));
    const r = await h.relayctl(cp, ['nodes', 'drain', 'n2', '--window', '1s']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.strictEqual((await closed).data.code, 4200);
    assert.strictEqual((await removed).data.id, 'move');
  } finally { a.c.disconnect(); b.c.disconnect(); }
});

test('a SIGKILLed data plane: its member leaves once, counts drop, a new node with its id serves', async () => {
  const nodes = await h.startCluster(3);
  const joined = [];
  try {
    for (const [i, id] of ['ada', 'bob', 'cy'].entries()) joined.push(await h.join(nodes[i], id, 'presence-k'));
    const [a, b] = joined;
    await h.flush(nodes[0], 'presence-k', joined.map((j) => j.ch));
    const seen = [a, b].map((j) => h.record(j.ch));
    const removed = [a, b].map((j) => h.once(j.ch, 'pusher:member_removed', 15000));
    await h.killDataPlane(nodes[2]);
    joined[2].c.disconnect();  // cy's pusher-js must not come back through the new n3
    for (const { data } of await Promise.all(removed)) assert.strictEqual(data.id, 'cy');
    const info = await (await h.sdk(nodes[0]).get({ path: '/channels/presence-k', params: { info: 'user_count,subscription_count' } })).json();
    assert.deepStrictEqual(info, { occupied: true, user_count: 2, subscription_count: 2 });
    // A new process with the same node id: its clients join, publish and whisper as usual.
    const n3 = await h.addDataPlane(nodes[0], 'n3');
    const d = await h.join(n3, 'dee', 'presence-k');
    joined.push(d);
    assert.deepStrictEqual(Object.keys(d.members.members).sort(), ['ada', 'bob', 'dee']);
    const whisper = [a, b].map((j) => h.once(j.ch, 'client-hi'));
    assert.strictEqual(d.ch.trigger('client-hi', { from: 'dee' }), true);
    for (const { meta } of await Promise.all(whisper)) assert.strictEqual(meta.user_id, 'dee');
    await h.flush(nodes[0], 'presence-k', [a.ch, b.ch, d.ch]);
    for (const events of seen) {
      assert.deepStrictEqual(events.filter((e) => e.name.startsWith('pusher:member_')).map((e) => `${e.name}:${e.data.id}`),
        ['pusher:member_removed:cy', 'pusher:member_added:dee']);
    }
  } finally { joined.forEach((j) => j.c.disconnect()); }
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
