// Cluster-wide state over a control plane and three real data plane processes, with pusher-js
// clients on every node: presence rosters and member events per user across nodes, subscription
// and user counts summed over nodes, and occupancy/member webhooks decided once.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');

after(h.stopAll);

// How many `event` events for `user` a recorded channel got.
const count = (events, event, user) => events.filter((e) => e.name === event && e.data.id === user).length;
const channelInfo = async (node, name, info) =>
  (await h.sdk(node).get({ path: `/channels/${name}`, params: { info } })).json();
const users = async (node, name) =>
  (await (await h.sdk(node).get({ path: `/channels/${name}/users` })).json()).users.map((u) => u.id);

test('presence across nodes: one roster, member_added once per user, member_removed on the last socket', async () => {
  const nodes = await h.startCluster(3);
  const joined = [];
  try {
    const ada = await h.join(nodes[0], 'ada', 'presence-p', { name: 'Ada' });
    joined.push(ada);
    const seenA = h.record(ada.ch);
    const bob = await h.join(nodes[1], 'bob', 'presence-p', { name: 'Bob' });
    joined.push(bob);
    const seenB = h.record(bob.ch);
    const cy = await h.join(nodes[2], 'cy', 'presence-p');
    joined.push(cy);
    const seenC = h.record(cy.ch);
    // The roster on n3 lists the members of n1 and n2, with their user_info.
    assert.strictEqual(cy.members.count, 3);
    assert.deepStrictEqual(cy.members.get('ada').info, { name: 'Ada' });
    assert.deepStrictEqual(cy.members.get('bob').info, { name: 'Bob' });
    // bob again, on n3: no member_added anywhere; the roster still has three users.
    const bob2 = await h.join(nodes[2], 'bob', 'presence-p', { name: 'Bob' });
    joined.push(bob2);
    const seenB2 = h.record(bob2.ch);
    assert.strictEqual(bob2.members.count, 3);
    assert.deepStrictEqual(await users(nodes[0], 'presence-p'), ['ada', 'bob', 'cy']);
    // bob's socket on n2 leaves: bob is still present through n3, so nobody hears of it.
    bob.c.disconnect();
    await waitForCount(nodes[0], 'presence-p', 3);
    await h.flush(nodes[0], 'presence-p', [ada.ch, cy.ch, bob2.ch]);
    assert.strictEqual(count(seenA, 'pusher:member_removed', 'bob'), 0);
    // bob's last socket leaves: exactly one member_removed for each remaining subscriber.
    bob2.c.disconnect();
    await waitForCount(nodes[0], 'presence-p', 2);
    await h.flush(nodes[0], 'presence-p', [ada.ch, cy.ch]);
    assert.deepStrictEqual(await users(nodes[0], 'presence-p'), ['ada', 'cy']);
    for (const seen of [seenA, seenC]) assert.strictEqual(count(seen, 'pusher:member_removed', 'bob'), 1);
    // Over the whole test: one member_added per user and subscriber, none for bob's second socket.
    const added = (user) => [seenA, seenB, seenC, seenB2].map((seen) => count(seen, 'pusher:member_added', user));
    assert.deepStrictEqual(added('bob'), [1, 0, 0, 0]);
    assert.deepStrictEqual(added('cy'), [1, 1, 0, 0]);
    assert.strictEqual(ada.ch.members.count, 2);
  } finally { joined.forEach((j) => j.c.disconnect()); }
});

// Waits until a channel's cluster-wide subscription count is `n` (the control plane applied a leave).
const waitForCount = (node, name, n) => h.waitFor(async () =>
  ((await channelInfo(node, name, 'subscription_count')).subscription_count || 0) === n, 10000, `${name} count ${n}`);

test('subscription_count and user_count are summed over every node', async () => {
  const nodes = await h.startCluster(3);
  const r = await h.relayctl(nodes[0], ['apps', 'update', 'app-id', '--subscription-count', 'true']);
  assert.strictEqual(r.code, 0, r.stderr);
  const clients = nodes.map((n) => h.client(n));
  const joined = [];
  try {
    const chans = [];
    for (const c of clients) {  // one after the other, so every change is a new total
      const ch = c.subscribe('counted');
      await h.once(ch, 'pusher:subscription_succeeded');
      chans.push(ch);
    }
    // Every subscriber, the first one on n1 included, is told the cluster total.
    await h.waitFor(() => chans.every((ch) => ch.subscriptionCount === 3), 10000, 'subscription_count 3 everywhere');
    assert.deepStrictEqual(await channelInfo(nodes[0], 'counted', 'subscription_count'), { occupied: true, subscription_count: 3 });
    // Presence: three users over three nodes, bob with a second socket on n1.
    joined.push(await h.join(nodes[0], 'ada', 'presence-c'), await h.join(nodes[1], 'bob', 'presence-c'),
      await h.join(nodes[2], 'cy', 'presence-c'), await h.join(nodes[0], 'bob', 'presence-c'));
    // bob's second socket went live at once (n1 already had the channel); its count reaches the
    // control plane with the node's next delta.
    await waitForCount(nodes[1], 'presence-c', 4);
    assert.deepStrictEqual(await channelInfo(nodes[1], 'presence-c', 'subscription_count,user_count'),
      { occupied: true, user_count: 3, subscription_count: 4 });
    const list = await (await h.sdk(nodes[2]).get({ path: '/channels', params: { filter_by_prefix: 'presence-', info: 'user_count' } })).json();
    assert.deepStrictEqual(list, { channels: { 'presence-c': { user_count: 3 } } });
    // n3's subscriber leaves: the others are told 2.
    clients[2].disconnect();
    await h.waitFor(() => chans.slice(0, 2).every((ch) => ch.subscriptionCount === 2), 10000, 'subscription_count 2');
    assert.deepStrictEqual(await channelInfo(nodes[0], 'counted', 'subscription_count'), { occupied: true, subscription_count: 2 });
  } finally { clients.forEach((c) => c.disconnect()); joined.forEach((j) => j.c.disconnect()); }
});

test('occupied, vacated and member webhooks are decided once for the whole cluster', async () => {
  const nodes = await h.startCluster(3);
  const rx = await h.webhookReceiver();
  const add = await h.relayctl(nodes[0], ['webhooks', 'add', '--app', 'app-id', '--url', rx.url, '--delay-ms', '200',
    '--events', 'channel_occupied,channel_vacated,member_added,member_removed']);
  assert.strictEqual(add.code, 0, add.stderr);
  const of = (channel) => rx.events.filter((e) => e.channel === channel)
    .map((e) => e.name + (e.user_id ? `:${e.user_id}` : ''));
  const clients = [];
  try {
    // 'hooked' on n1 and n2; presence: ada on n1 and n2, bob on n3.
    const who = ['ada', 'ada', 'bob'];
    for (let i = 0; i < 3; i++) {
      const c = h.client(nodes[i], h.authOptions(nodes[i], () => ({ user_id: who[i] })));
      clients.push(c);
      const p = c.subscribe('presence-hooked');
      await h.once(p, 'pusher:subscription_succeeded');
      if (i < 2) await h.once(c.subscribe('hooked'), 'pusher:subscription_succeeded');
    }
    await h.waitFor(() => of('presence-hooked').length === 3 && of('hooked').length === 1, 10000, 'occupied and members');
    // Leave one by one: the first ada socket and the first 'hooked' subscriber change nothing.
    clients[0].disconnect();
    await waitForCount(nodes[0], 'hooked', 1);
    clients[1].disconnect();
    await h.waitFor(() => of('hooked').length === 2, 10000, 'hooked vacated');
    clients[2].disconnect();
    await h.waitFor(() => of('presence-hooked').length === 6, 10000, 'presence-hooked vacated');
    // Webhooks of one channel are delivered in order: occupying both channels again proves that
    // every event sent before has arrived.
    const again = h.client(nodes[2], h.authOptions(nodes[2], () => ({ user_id: 'ada' })));
    clients.push(again);
    await h.once(again.subscribe('hooked'), 'pusher:subscription_succeeded');
    await h.once(again.subscribe('presence-hooked'), 'pusher:subscription_succeeded');
    await h.waitFor(() => of('hooked').length >= 3 && of('presence-hooked').length >= 8, 10000, 'second occupation');
    assert.deepStrictEqual(of('hooked'), ['channel_occupied', 'channel_vacated', 'channel_occupied']);
    assert.deepStrictEqual(of('presence-hooked'), ['channel_occupied', 'member_added:ada', 'member_added:bob',
      'member_removed:ada', 'member_removed:bob', 'channel_vacated', 'channel_occupied', 'member_added:ada']);
    assert.strictEqual(rx.invalid, 0);
  } finally { clients.forEach((c) => c.disconnect()); rx.close(); }
});
