// The walking skeleton with real clients: pusher-js 8 subscribes, the official pusher SDK
// triggers over the signed HTTP API, relayctl publishes over gRPC; in both shapes.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const h = require('./lib/harness');

after(h.stopAll);

async function skeleton(server) {
  const c = h.client(server);
  try {
    const ch = c.subscribe('orders');
    await h.once(ch, 'pusher:subscription_succeeded');
    const got = h.once(ch, 'order-shipped');
    const res = await h.sdk(server).trigger('orders', 'order-shipped', { id: 7 });
    assert.strictEqual(res.status, 200);
    assert.deepStrictEqual((await got).data, { id: 7 });
    const viaGrpc = h.once(ch, 'from-relayctl');
    const r = await h.relayctl(server, ['publish', '--app', 'app-id', '--channel', 'orders', '--event', 'from-relayctl', '--data', '{"x":1}']);
    assert.strictEqual(r.code, 0, r.stderr);
    assert.deepStrictEqual((await viaGrpc).data, { x: 1 });
  } finally {
    c.disconnect();
  }
}

test('one process: pusher-js receives SDK and relayctl events', async () => {
  await skeleton(await h.startRelay());
});

test('two processes: control plane + data plane', async () => {
  await skeleton(await h.startSplit());
});

test('a wrong secret is refused with 401', async () => {
  const server = await h.startRelay();
  await assert.rejects(h.sdk(server, 'wrong-secret').trigger('orders', 'x', {}), (e) => e.status === 401);
});
