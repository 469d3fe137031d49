// Webhooks end to end: a real HTTP receiver verifies every request with the pusher SDK's webhook
// helper; event types, filters, debounce, retries, and delivery after a control plane kill.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const http = require('node:http');
const h = require('./lib/harness');

after(h.stopAll);

// A receiver that answers `failFirst` requests with 500, then 200; keeps verified events.
async function receiver(failFirst = 0) {
  const r = { events: [], requests: 0, invalid: 0, failLeft: failFirst };
  const server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      r.requests++;
      if (r.failLeft > 0) { r.failLeft--; res.writeHead(500); res.end(); return; }
      const hook = h.sdk({ httpPort: 1 }).webhook({ headers: req.headers, rawBody: body });
      if (!hook.isValid()) { r.invalid++; res.writeHead(401); res.end(); return; }
      r.events.push(...hook.getEvents());
      res.writeHead(200); res.end('{}');
    });
  });
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  r.url = `http://127.0.0.1:${server.address().port}/hooks`;
  r.close = () => server.close();
  return r;
}

const names = (r) => r.events.map((e) => `${e.name}:${e.channel}${e.user_id ? ':' + e.user_id : ''}`);

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
  // come from the persisted outbox (occupancy events are re-derived from the nodes' snapshots).
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

test('webhooks test sends a signed test event', async () => {
  const server = await h.startRelay();
  const rx = await receiver();
  await h.relayctl(server, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url]);
  const r = await h.relayctl(server, ['webhooks', 'test', 'app-id']);
  assert.strictEqual(r.code, 0, r.stderr + r.stdout);
  assert.deepStrictEqual(names(rx), ['test:relay-webhook-test']);
  rx.close();
});
