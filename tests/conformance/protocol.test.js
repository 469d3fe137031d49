// Protocol features through pusher-js 8 and the pusher SDK: private and presence channels,
// client events, user sign-in and server-to-user events, cache channels, channel queries.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');

let server;
before(async () => { server = await h.startRelay(); });
after(h.stopAll);

test('private channel with the SDK signing the subscription', async () => {
  const c = h.client(server, h.authOptions(server, () => ({ user_id: 'u1' })));
  try {
    const ch = c.subscribe('private-orders');
    await h.once(ch, 'pusher:subscription_succeeded');
    const got = h.once(ch, 'paid');
    await h.sdk(server).trigger('private-orders', 'paid', 'yes');
    assert.strictEqual((await got).data, 'yes');
  } finally { c.disconnect(); }
});

test('presence: roster, member_added and member_removed, users endpoint', async () => {
  const a = h.client(server, h.authOptions(server, () => ({ user_id: 'ada', user_info: { name: 'Ada' } })));
  const b = h.client(server, h.authOptions(server, () => ({ user_id: 'bob', user_info: { name: 'Bob' } })));
  try {
    const pa = a.subscribe('presence-room');
    await h.once(pa, 'pusher:subscription_succeeded');
    const added = h.once(pa, 'pusher:member_added');
    const pb = b.subscribe('presence-room');
    const { data: members } = await h.once(pb, 'pusher:subscription_succeeded');
    assert.strictEqual(members.count, 2);
    assert.deepStrictEqual(members.get('ada').info, { name: 'Ada' });
    assert.strictEqual((await added).data.id, 'bob');
    const users = await (await h.sdk(server).get({ path: '/channels/presence-room/users' })).json();
    assert.deepStrictEqual(users.users.map((u) => u.id).sort(), ['ada', 'bob']);
    const info = await (await h.sdk(server).get({ path: '/channels/presence-room', params: { info: 'user_count,subscription_count' } })).json();
    assert.deepStrictEqual(info, { occupied: true, user_count: 2, subscription_count: 2 });
    const removed = h.once(pa, 'pusher:member_removed');
    b.disconnect();
    assert.strictEqual((await removed).data.id, 'bob');
  } finally { a.disconnect(); b.disconnect(); }
});

test('client events reach others, never the sender, with user_id on presence', async () => {
  const a = h.client(server, h.authOptions(server, () => ({ user_id: 'a' })));
  const b = h.client(server, h.authOptions(server, () => ({ user_id: 'b' })));
  try {
    const ca = a.subscribe('presence-chat');
    const cb = b.subscribe('presence-chat');
    await Promise.all([h.once(ca, 'pusher:subscription_succeeded'), h.once(cb, 'pusher:subscription_succeeded')]);
    let echoed = false;
    ca.bind('client-typing', () => { echoed = true; });
    const got = h.once(cb, 'client-typing');
    assert.ok(ca.trigger('client-typing', { who: 'a' }));
    const { data, meta } = await got;
    assert.deepStrictEqual(data, { who: 'a' });
    assert.strictEqual(meta.user_id, 'a');
    // A round trip after the event proves the sender's echo would have arrived by now.
    const ping = h.once(ca, 'client-back');
    cb.trigger('client-back', {});
    await ping;
    assert.strictEqual(echoed, false);
  } finally { a.disconnect(); b.disconnect(); }
});

test('user sign-in, sendToUser and terminateUserConnections', async () => {
  const c = h.client(server, h.authOptions(server, () => ({ id: 'user-9', user_info: { name: 'Nine' } })));
  try {
    c.signin();
    await h.once(c.connection, 'connected');
    await c.user.signinDonePromise;  // resolved by pusher-js on pusher:signin_success
    assert.strictEqual(c.user.user_data.id, 'user-9');
    let received = null;
    c.user.bind('note', (d) => { received = d; });
    // The control plane learns of the sign-in asynchronously: resend every 200 ms, bounded.
    const s = h.sdk(server);
    for (let i = 0; i < 50 && received === null; i++) {
      await s.sendToUser('user-9', 'note', { n: 1 });
      await h.waitFor(() => received !== null, 200).catch(() => {});
    }
    assert.deepStrictEqual(received, { n: 1 });
    const closed = h.once(c.connection, 'state_change');
    await s.terminateUserConnections('user-9');
    const { data } = await closed;
    assert.strictEqual(data.current === 'disconnected' || data.current === 'unavailable' || data.current === 'failed', true);
  } finally { c.disconnect(); }
});

test('cache channel: miss first, then the last event on subscribe', async () => {
  const a = h.client(server);
  const b = h.client(server);
  try {
    const ca = a.subscribe('cache-prices');
    const miss = h.once(ca, 'pusher:cache_miss');
    await h.once(ca, 'pusher:subscription_succeeded');
    await miss;
    await h.sdk(server).trigger('cache-prices', 'tick', { p: 42 });
    const cb = b.subscribe('cache-prices');
    assert.deepStrictEqual((await h.once(cb, 'tick')).data, { p: 42 });
    const info = await (await h.sdk(server).get({ path: '/channels/cache-prices', params: { info: 'cache' } })).json();
    assert.strictEqual(info.cache.event, 'tick');
  } finally { a.disconnect(); b.disconnect(); }
});

test('channel queries and batch triggers through the SDK', async () => {
  const c = h.client(server);
  try {
    const ch = c.subscribe('stocks');
    await h.once(ch, 'pusher:subscription_succeeded');
    const list = await (await h.sdk(server).get({ path: '/channels', params: { info: 'subscription_count' } })).json();
    assert.strictEqual(list.channels.stocks.subscription_count, 1);
    const got = h.once(ch, 'b2');
    const res = await h.sdk(server).triggerBatch([{ channel: 'stocks', name: 'b1', data: '1' }, { channel: 'stocks', name: 'b2', data: '2' }]);
    assert.strictEqual(res.status, 200);
    assert.strictEqual((await got).data, 2);
    // The SDK refuses these itself; send them signed but raw to see the server's answers.
    const raw = (body) => h.sdk(server).post({ path: '/events', body });
    await assert.rejects(raw({ name: 'x'.repeat(201), channels: ['stocks'], data: '{}' }), (e) => e.status === 400);
    await assert.rejects(raw({ name: 'big', channels: ['stocks'], data: 'x'.repeat(11000) }), (e) => e.status === 413);
    await assert.rejects(raw({ name: 'e', channels: ['bad name'], data: '{}' }), (e) => e.status === 400);
  } finally { c.disconnect(); }
});
