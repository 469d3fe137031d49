// A control plane SIGKILLed and restarted under three real data plane processes with pusher-js
// clients on every node: no client notices, what can work locally keeps working while it is down,
// presence needs it (503), and afterwards the cluster view is rebuilt from the nodes' snapshots.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');

after(h.stopAll);

const memberEvents = (events) => events.filter((e) => e.name === 'pusher:member_added' || e.name === 'pusher:member_removed');

test('control plane SIGKILL and restart: no client drops, local service continues, the view is rebuilt', async () => {
  const nodes = await h.startCluster(3);
  const rx = await h.webhookReceiver();
  const hook = await h.relayctl(nodes[0], ['webhooks', 'add', '--app', 'app-id', '--url', rx.url,
    '--events', 'channel_occupied,member_added', '--filter-prefix', 'presence-r']);
  assert.strictEqual(hook.code, 0, hook.stderr);
  const joined = [];
  const extra = [];
  try {
    for (const [i, id] of ['ada', 'bob', 'cy'].entries()) {
      joined.push(await h.join(nodes[i], id, 'presence-r', { name: id.toUpperCase() }));
    }
    const pubs = joined.map((j) => j.c.subscribe('pub-r'));
    await Promise.all(pubs.map((ch) => h.once(ch, 'pusher:subscription_succeeded')));
    // A second client on n1, for local traffic while the control plane is away.
    const local = h.client(nodes[0], h.authOptions(nodes[0], () => ({ user_id: 'lee' })));
    extra.push(local);
    await h.once(local.connection, 'connected');
    // Everything before this point has arrived; from now on no member event may appear.
    await h.flush(nodes[0], 'presence-r', joined.map((j) => j.ch));
    const seen = joined.map((j) => h.record(j.ch));
    const changes = [...joined.map((j) => j.c), local].map(h.states);

    // The webhooks so far are delivered and off the outbox (a delivery cut by the kill would be
    // retried: at least once), so any further one would come from the restart.
    const delivered = async () => Number(JSON.parse((await h.relayctl(nodes[0], ['webhooks', 'list', '--app', 'app-id',
      '--json'])).stdout).webhooks[0].stats.delivered || 0);
    await h.waitFor(async () => (await delivered()) === 4, 10000, 'four webhooks delivered');
    await h.stopControlPlane(nodes[0]);
    // Down: a public subscription on a data plane still succeeds...
    const down = joined[0].c.subscribe('pub-down');
    await h.once(down, 'pusher:subscription_succeeded');
    // ...client events among the subscribers of one node still flow...
    const pa = joined[0].c.subscribe('private-local');
    const pl = local.subscribe('private-local');
    await Promise.all([pa, pl].map((ch) => h.once(ch, 'pusher:subscription_succeeded')));
    const whisper = h.once(pl, 'client-local');
    assert.strictEqual(pa.trigger('client-local', { x: 1 }), true);
    assert.deepStrictEqual((await whisper).data, { x: 1 });
    // ...and a presence subscription is refused with 503 (the roster is the control plane's).
    const refused = h.once(local.subscribe('presence-down'), 'pusher:subscription_error');
    assert.strictEqual((await refused).data.status, 503);

    await h.startControlPlane(nodes[0]);  // resolves once all three data planes re-attached
    assert.deepStrictEqual((await (await h.sdk(nodes[0]).get({ path: '/channels/presence-r/users' })).json()),
      { users: [{ id: 'ada' }, { id: 'bob' }, { id: 'cy' }] });
    // Published after the restart: reaches everyone on every node, and the subscription made
    // while the control plane was down.
    const after = [...pubs, ...joined.map((j) => j.ch), down].map((ch) => h.once(ch, 'after'));
    await h.sdk(nodes[0]).trigger(['pub-r', 'presence-r', 'pub-down'], 'after', { ok: true });
    for (const { data } of await Promise.all(after)) assert.deepStrictEqual(data, { ok: true });
    // A new member after the restart: the roster has everyone with their info, and each of the
    // others hears of the newcomer exactly once.
    const dee = await h.join(nodes[1], 'dee', 'presence-r');
    extra.push(dee.c);
    assert.strictEqual(dee.members.count, 4);
    await h.flush(nodes[0], 'presence-r', [...joined.map((j) => j.ch), dee.ch]);
    for (const events of seen) {
      assert.deepStrictEqual(memberEvents(events), [{ name: 'pusher:member_added', data: { id: 'dee', info: {} } }]);
    }
    // No connection ever left `connected`.
    assert.deepStrictEqual(changes, [[], [], [], []]);
    // Nor did the webhooks announce again what the restart rebuilt (in order per channel, so
    // dee's member_added comes after anything the re-attach could have sent).
    await h.waitFor(() => rx.names().includes('member_added:presence-r:dee'), 10000, 'member_added webhook for dee');
    assert.deepStrictEqual(rx.names(), ['channel_occupied:presence-r', 'member_added:presence-r:ada',
      'member_added:presence-r:bob', 'member_added:presence-r:cy', 'member_added:presence-r:dee']);
  } finally { joined.forEach((j) => j.c.disconnect()); extra.forEach((c) => c.disconnect()); rx.close(); }
});

// The snapshot a restarted control plane rebuilds rosters from carries each member's user_info.
test('user_info survives a control plane restart', async () => {
  const nodes = await h.startCluster(2);
  const joined = [];
  try {
    joined.push(await h.join(nodes[0], 'ada', 'presence-info', { name: 'Ada' }));
    await h.restartControlPlane(nodes[0]);
    joined.push(await h.join(nodes[1], 'bob', 'presence-info'));
    assert.deepStrictEqual(joined[1].members.get('ada').info, { name: 'Ada' });
    const users = await (await h.sdk(nodes[0]).get({ path: '/channels/presence-info/users', params: { with_user_info: '1' } })).json();
    assert.deepStrictEqual(users.users.find((u) => u.id === 'ada').user_info, { name: 'Ada' });
  } finally { joined.forEach((j) => j.c.disconnect()); }
});
