// Webhooks end to end: a real HTTP receiver verifies every request with the pusher SDK's webhook
// helper; event types, filters, debounce, retries, and delivery after a control plane kill.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const h = require('./lib/harness');

after(h.stopAll);

const receiver = h.webhookReceiver;
const names = (r) => r.names();

test('every event type, signed and verifiable, in order', async () => {
  const server = await h.startRelay();
  const rx = await receiver();
  const add = await h.relayctl(server, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url, '--delay-ms', '200']);
  assert.strictEqual(add.code, 0, add.stderr);
  const a = h.client(server, h.authOptions(server, () => ({ user_id: 'ada' })));
  const b = h.client(server, h.authOptions(server, () => ({ user_id: 'bob' })));
  try {
    const pa = a.subscribe('presence-room');
    await h.once(pa, 'pusher:subscription_succeeded');
    const pb = b.subscribe('presence-room');
    await h.once(pb, 'pusher:subscription_succeeded');
    pb.trigger('client-hello', { hi: 1 });
    const cache = a.subscribe('cache-empty');
    await h.once(cache, 'pusher:cache_miss');
    b.disconnect();
    a.disconnect();
    await h.waitFor(() => names(rx).includes('channel_vacated:presence-room'), 10000, 'channel_vacated');
    await h.waitFor(() => names(rx).includes('channel_vacated:cache-empty'), 10000, 'cache vacated');
    const n = names(rx);
    for (const want of ['channel_occupied:presence-room', 'member_added:presence-room:ada',
      'member_added:presence-room:bob', 'client_event:presence-room:bob', 'cache_miss:cache-empty',
      'member_removed:presence-room:bob', 'member_removed:presence-room:ada', 'channel_vacated:presence-room']) {
      assert.ok(n.includes(want), `missing ${want} in ${n}`);
    }
    assert.ok(n.indexOf('channel_occupied:presence-room') < n.indexOf('member_added:presence-room:ada'));
    assert.ok(n.indexOf('member_removed:presence-room:ada') < n.indexOf('channel_vacated:presence-room'));
    const ce = rx.events.find((e) => e.name === 'client_event');
    assert.strictEqual(ce.event, 'client-hello');
    assert.strictEqual(ce.data, '{"hi":1}');
    assert.strictEqual(rx.invalid, 0);
    const list = await h.relayctl(server, ['webhooks', 'list', '--app', 'app-id', '--json']);
    const stats = JSON.parse(list.stdout).webhooks[0].stats;
    assert.ok(Number(stats.delivered) >= n.length);
  } finally { a.disconnect(); b.disconnect(); rx.close(); }
});

test('filters and debounce: a quick resubscribe sends nothing, only matching channels are sent', async () => {
  const server = await h.startRelay();
  const rx = await receiver();
  await h.relayctl(server, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url,
    '--events', 'channel_occupied,channel_vacated', '--filter-prefix', 'keep-', '--delay-ms', '1500']);
  const c = h.client(server);
  try {
    let ch = c.subscribe('keep-1');
    await h.once(ch, 'pusher:subscription_succeeded');
    const other = c.subscribe('drop-1');
    await h.once(other, 'pusher:subscription_succeeded');
    await h.waitFor(() => names(rx).includes('channel_occupied:keep-1'), 10000, 'occupied');
    c.unsubscribe('keep-1');
    ch = c.subscribe('keep-1');  // back within the delay: neither vacated nor occupied again
    await h.once(ch, 'pusher:subscription_succeeded');
    c.unsubscribe('keep-1');
    await h.waitFor(() => names(rx).includes('channel_vacated:keep-1'), 10000, 'vacated');
    assert.deepStrictEqual(names(rx), ['channel_occupied:keep-1', 'channel_vacated:keep-1']);
  } finally { c.disconnect(); rx.close(); }
});

test('failed deliveries are retried until the receiver recovers', async () => {
  const server = await h.startRelay();
  const rx = await receiver(3);
  await h.relayctl(server, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url, '--events', 'channel_occupied']);
  const c = h.client(server);
  try {
    const ch = c.subscribe('retry-me');
    await h.once(ch, 'pusher:subscription_succeeded');
    await h.waitFor(() => names(rx).includes('channel_occupied:retry-me'), 20000, 'delivery after retries');
    assert.ok(rx.requests >= 4);
    const list = JSON.parse((await h.relayctl(server, ['webhooks', 'list', '--app', 'app-id', '--json'])).stdout);
    assert.ok(Number(list.webhooks[0].stats.failed) >= 3);
  } finally { c.disconnect(); rx.close(); }
});

test('undelivered events survive a control plane killed with SIGKILL', async () => {
  const server = await h.startSplit();
  const rx = await receiver(Infinity);  // refuses everything for now
  // cache_miss is only ever emitted at subscribe time, so a delivery after the restart can only
  // come from the persisted outbox.
  await h.relayctl(server, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url, '--events', 'cache_miss']);
  const c = h.client(server);
  try {
    const ch = c.subscribe('cache-persist');
    await h.once(ch, 'pusher:cache_miss');
    await h.waitFor(() => rx.requests >= 1, 10000, 'first attempt');
    assert.strictEqual(rx.events.length, 0);
    await h.restartControlPlane(server);
    rx.failLeft = 0;  // recover: answer 200 from now on
    await h.waitFor(() => names(rx).includes('cache_miss:cache-persist'), 20000, 'delivery after restart');
    assert.strictEqual(names(rx).filter((n) => n === 'cache_miss:cache-persist').length, 1);
  } finally { c.disconnect(); rx.close(); }
});

test('a control plane stopped with SIGTERM invents no member_removed or channel_vacated', async () => {
  const server = await h.startCluster(2);
  const rx = await receiver();
  await h.relayctl(server[0], ['webhooks', 'add', '--app', 'app-id', '--url', rx.url, '--delay-ms', '0']);
  const a = h.client(server[0], h.authOptions(server[0], () => ({ user_id: 'ada' })));
  const b = h.client(server[1], h.authOptions(server[1], () => ({ user_id: 'bob' })));
  try {
    const pa = a.subscribe('presence-stay');
    await h.once(pa, 'pusher:subscription_succeeded');
    const bobAdded = h.once(pa, 'pusher:member_added');
    const pb = b.subscribe('presence-stay');
    await h.once(pb, 'pusher:subscription_succeeded');
    await bobAdded;
    await h.waitFor(() => names(rx).includes('member_added:presence-stay:bob'), 10000, 'member_added bob');
    const removed = [];
    pa.bind('pusher:member_removed', (m) => removed.push(m.id));
    pb.bind('pusher:member_removed', (m) => removed.push(m.id));
    await h.restartControlPlane(server[0], 'SIGTERM');
    // A channel occupied after the restart: its webhook follows whatever the restart caused.
    const probe = a.subscribe('after-restart');
    await h.once(probe, 'pusher:subscription_succeeded');
    await h.waitFor(() => names(rx).includes('channel_occupied:after-restart'), 10000, 'probe webhook');
    const n = names(rx);
    assert.deepStrictEqual(n.filter((e) => e.startsWith('member_removed') || e.startsWith('channel_vacated')), []);
    assert.deepStrictEqual(removed, [], 'no client saw a member leave');
    assert.strictEqual(pa.members.count, 2);
  } finally { a.disconnect(); b.disconnect(); rx.close(); }
});

test('webhooks test sends a signed test event', async () => {
  const server = await h.startRelay();
  const rx = await receiver();
  await h.relayctl(server, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url]);
  const r = await h.relayctl(server, ['webhooks', 'test', '--app', 'app-id']);
  assert.strictEqual(r.code, 0, r.stderr + r.stdout);
  assert.deepStrictEqual(names(rx), ['test:relay-webhook-test']);
  // remove: the endpoint disappears from the list and receives nothing more.
  const list = JSON.parse((await h.relayctl(server, ['webhooks', 'list', '--app', 'app-id', '--json'])).stdout);
  const id = list.webhooks[0].id;
  assert.strictEqual((await h.relayctl(server, ['webhooks', 'remove', id])).code, 0);
  const after = JSON.parse((await h.relayctl(server, ['webhooks', 'list', '--app', 'app-id', '--json'])).stdout);
  assert.strictEqual((after.webhooks || []).length, 0);
  assert.strictEqual((await h.relayctl(server, ['webhooks', 'remove', id])).code, 5);
  rx.close();
});

test('subscription_count events, custom headers and batching', async () => {
  const server = await h.startRelay();
  const rx = await receiver();
  assert.strictEqual((await h.relayctl(server, ['apps', 'update', 'app-id', '--subscription-count', 'true'])).code, 0);
  await h.relayctl(server, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url, '--events', 'subscription_count',
    '--header', 'X-Tenant=shop-1', '--batch-window-ms', '500', '--batch-max', '10']);
  const a = h.client(server);
  const b = h.client(server);
  try {
    const ca = a.subscribe('counted');
    await h.once(ca, 'pusher:subscription_succeeded');
    const cb = b.subscribe('counted');
    await h.once(cb, 'pusher:subscription_succeeded');
    await h.waitFor(() => rx.events.some((e) => e.subscription_count === 2), 10000, 'count 2');
    const counts = rx.events.filter((e) => e.channel === 'counted').map((e) => e.subscription_count);
    assert.deepStrictEqual(counts, [1, 2]);
    assert.strictEqual(rx.batches.length, 1, 'both changes within the window travel in one request');
    assert.strictEqual(rx.batches[0].headers['x-tenant'], 'shop-1');
  } finally { a.disconnect(); b.disconnect(); rx.close(); }
});

test('a dead endpoint delays neither publishing nor another app\'s webhooks', async () => {
  const server = await h.startRelay();
  // Accepts requests and never answers.
  const hung = http.createServer(() => {});
  await new Promise((resolve) => hung.listen(0, '127.0.0.1', resolve));
  const other = JSON.parse((await h.relayctl(server, ['apps', 'create', '--name', 'other', '--json'])).stdout);
  const rx = await receiver(0, other);
  await h.relayctl(server, ['webhooks', 'add', '--app', 'app-id', '--url', `http://127.0.0.1:${hung.address().port}/x`]);
  await h.relayctl(server, ['webhooks', 'add', '--app', other.id, '--url', rx.url, '--events', 'channel_occupied']);
  const a = h.client(server);
  const Pusher = require('pusher-js');
  const b = new Pusher(other.key, { wsHost: '127.0.0.1', wsPort: server.wsPort, forceTLS: false,
    enabledTransports: ['ws'], cluster: 'mt1', disableStats: true });
  try {
    for (let i = 0; i < 5; i++) {
      const ch = a.subscribe(`busy-${i}`);
      await h.once(ch, 'pusher:subscription_succeeded');
    }
    const t0 = Date.now();
    const res = await h.sdk(server).trigger('busy-0', 'e', {});
    assert.strictEqual(res.status, 200);
    assert.ok(Date.now() - t0 < 1000, 'publishing was slowed by a dead webhook endpoint');
    const cb = b.subscribe('other-channel');
    await h.once(cb, 'pusher:subscription_succeeded');
    const t1 = Date.now();
    await h.waitFor(() => names(rx).includes('channel_occupied:other-channel'), 4000, 'other app webhook');
    assert.ok(Date.now() - t1 < 4000);
  } finally { a.disconnect(); b.disconnect(); rx.close(); hung.closeAllConnections(); hung.close(); }
});
