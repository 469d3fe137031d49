// Delivery across a control plane and three real data plane processes, with pusher-js clients on
// every node: HTTP, gRPC and batch triggers, client events, cache channels, send-to-user and
// terminate, and routing by interest (one publish command per node with subscribers).
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');

after(h.stopAll);

const named = (events, prefix) => events.filter((e) => e.name.startsWith(prefix));
const subscribed = (ch) => h.once(ch, 'pusher:subscription_succeeded');

test('HTTP, gRPC and batch triggers reach subscribers on every node', async () => {
  const nodes = await h.startCluster(3);
  const clients = nodes.map((n) => h.client(n));
  try {
    const news = clients.map((c) => c.subscribe('news'));
    const sports = clients.slice(1).map((c) => c.subscribe('sports'));  // on n2 and n3 only
    await Promise.all([...news, ...sports].map(subscribed));
    const got = news.map(h.record);
    const gotSports = sports.map(h.record);
    const s = h.sdk(nodes[0]);
    assert.strictEqual((await s.trigger('news', 'via-http', { n: 1 })).status, 200);
    const r = await h.relayctl(nodes[0], ['publish', '--app', 'app-id', '--channel', 'news', '--channel', 'sports',
      '--event', 'via-grpc', '--data', '{"n":2}']);
    assert.strictEqual(r.code, 0, r.stderr);
    await s.triggerBatch([{ channel: 'news', name: 'batch-a', data: '{"n":3}' },
      { channel: 'sports', name: 'batch-b', data: '{"n":4}' }]);
    await h.flush(nodes[0], 'news', news);
    await h.flush(nodes[0], 'sports', sports);
    for (const events of got) {
      assert.deepStrictEqual(events.filter((e) => !e.name.startsWith('marker-')),
        [{ name: 'via-http', data: { n: 1 } }, { name: 'via-grpc', data: { n: 2 } }, { name: 'batch-a', data: { n: 3 } }]);
    }
    for (const events of gotSports) {
      assert.deepStrictEqual(events.filter((e) => !e.name.startsWith('marker-')),
        [{ name: 'via-grpc', data: { n: 2 } }, { name: 'batch-b', data: { n: 4 } }]);
    }
  } finally { clients.forEach((c) => c.disconnect()); }
});

test('client events from node A reach B and C, never the sender, on private and presence channels', async () => {
  const nodes = await h.startCluster(3);
  const users = ['ua', 'ub', 'uc'];
  const clients = nodes.map((n, i) => h.client(n, h.authOptions(n, () => ({ user_id: users[i] }))));
  try {
    for (const name of ['private-chat', 'presence-chat']) {
      const chans = clients.map((c) => c.subscribe(name));
      await Promise.all(chans.map(subscribed));
      const got = chans.map(h.record);
      const [b, c] = chans.slice(1).map((ch) => h.once(ch, 'client-hi'));
      assert.strictEqual(chans[0].trigger('client-hi', { from: 'a' }), true);
      for (const { data, meta } of [await b, await c]) {
        assert.deepStrictEqual(data, { from: 'a' });
        // On presence channels the sender's user_id travels with the event.
        assert.strictEqual(meta && meta.user_id, name.startsWith('presence-') ? 'ua' : undefined);
      }
      await h.flush(nodes[0], name, chans);
      assert.deepStrictEqual(got.map((events) => named(events, 'client-').length), [0, 1, 1]);
    }
  } finally { clients.forEach((c) => c.disconnect()); }
});

test('a cache channel holds one cluster-wide value: later subscribers on other nodes get it', async () => {
  const nodes = await h.startCluster(3);
  const clients = nodes.map((n) => h.client(n));
  try {
    const first = clients[0].subscribe('cache-x');
    await h.once(first, 'pusher:cache_miss');
    const tick = h.once(first, 'price');
    await h.sdk(nodes[0]).trigger('cache-x', 'price', { p: 1 });
    assert.deepStrictEqual((await tick).data, { p: 1 });
    // A subscriber on n2 gets the stored event, not a miss.
    const second = clients[1].subscribe('cache-x');
    const seen = h.record(second);
    await h.once(second, 'price');
    assert.deepStrictEqual(seen.filter((e) => !e.name.startsWith('pusher_internal:')),
      [{ name: 'pusher:subscription_succeeded', data: {} }, { name: 'price', data: { p: 1 } }]);
    // A newer value replaces it everywhere: n3 gets { p: 2 }.
    const both = [first, second].map((ch) => h.once(ch, 'price'));
    await h.sdk(nodes[0]).trigger('cache-x', 'price', { p: 2 });
    await Promise.all(both);
    const third = clients[2].subscribe('cache-x');
    assert.deepStrictEqual((await h.once(third, 'price')).data, { p: 2 });
    const info = await (await h.sdk(nodes[0]).get({ path: '/channels/cache-x', params: { info: 'cache' } })).json();
    assert.strictEqual(info.occupied, true);
    assert.strictEqual(info.cache.data, '{"p":2}');
    assert.ok(info.cache.ttl > 0 && info.cache.ttl <= 1800, `ttl ${info.cache.ttl}`);
  } finally { clients.forEach((c) => c.disconnect()); }
});

test('send-to-user and terminate reach the user on every node it is signed in on', async () => {
  const nodes = await h.startCluster(3);
  const who = ['u-1', 'u-1', 'u-2'];  // u-1 on n1 and n2, u-2 on n3
  const clients = nodes.map((n, i) => h.client(n, h.authOptions(n, () => ({ id: who[i] }))));
  try {
    for (const c of clients) c.signin();
    await Promise.all(clients.map((c) => c.user.signinDonePromise));
    await Promise.all(clients.map(h.barrier));  // the control plane knows every sign-in
    const notes = clients.map(() => []);
    clients.forEach((c, i) => c.user.bind('note', (d) => notes[i].push(d)));
    const s = h.sdk(nodes[0]);
    await s.sendToUser('u-1', 'note', { n: 1 });
    // The same through the users/{id}/events endpoint.
    assert.strictEqual((await s.post({ path: '/users/u-1/events', body: { name: 'note', data: '{"n":2}' } })).status, 200);
    await h.waitFor(() => notes[0].length === 2 && notes[1].length === 2, 10000, 'both sockets of u-1');
    // u-2 gets its own note, after any stray u-1 note would have reached n3.
    await s.sendToUser('u-2', 'note', { n: 3 });
    await h.waitFor(() => notes[2].length === 1, 10000, 'u-2 note');
    assert.deepStrictEqual(notes, [[{ n: 1 }, { n: 2 }], [{ n: 1 }, { n: 2 }], [{ n: 3 }]]);

    const errors = clients.slice(0, 2).map((c) => h.once(c.connection, 'error'));
    const kept = h.states(clients[2]);
    await s.terminateUserConnections('u-1');
    for (const e of await Promise.all(errors)) assert.strictEqual(e.data.data.code, 4009);
    await h.waitFor(() => clients.slice(0, 2).every((c) => c.connection.state !== 'connected'), 10000, 'both closed');
    await s.sendToUser('u-2', 'note', { n: 4 });
    await h.waitFor(() => notes[2].length === 2, 10000, 'u-2 still reachable');
    assert.deepStrictEqual(kept, []);
    assert.strictEqual(clients[2].connection.state, 'connected');
  } finally { clients.forEach((c) => c.disconnect()); }
});

test('routing by interest: a publish goes only to the nodes with subscribers', async () => {
  const nodes = await h.startCluster(3);
  const clients = nodes.map((n) => h.client(n));
  try {
    const everywhere = clients.map((c) => c.subscribe('everywhere'));
    const onlyB = clients[1].subscribe('only-b');
    await Promise.all([...everywhere, onlyB].map(subscribed));
    const s = h.sdk(nodes[0]);
    const sent = async (channel, waitOn) => {
      const before = await h.publishCommands(nodes[0]);
      const got = waitOn.map((ch) => h.once(ch, 'e'));
      await s.trigger(channel, 'e', {});
      await Promise.all(got);
      return (await h.publishCommands(nodes[0])) - before;
    };
    assert.strictEqual(await sent('only-b', [onlyB]), 1);
    assert.strictEqual(await sent('everywhere', everywhere), 3);
    assert.strictEqual(await sent('nobody-here', []), 0);
  } finally { clients.forEach((c) => c.disconnect()); }
});
