// The compose topology, run by tests/container/run.sh: a pusher-js client on each data plane
// receives an event the pusher SDK triggers through the control plane's HTTP API.
// usage: node split-check.js DP1_PORT DP2_PORT CP_HTTP_PORT APP_SECRET
'use strict';
const assert = require('node:assert');
const PusherServer = require('../conformance/node_modules/pusher');
const h = require('../conformance/lib/harness');

async function main() {
  const [dp1, dp2, cpHttp, secret] = process.argv.slice(2);
  const clients = [dp1, dp2].map((port) => h.client({ wsPort: Number(port) }));
  const channels = clients.map((c) => c.subscribe('orders'));
  await Promise.all(channels.map((ch) => h.once(ch, 'pusher:subscription_succeeded', 15000)));
  // The control plane learns each node's subscriptions asynchronously: wait until it has them.
  await Promise.all(clients.map((c) => h.barrier(c)));
  const got = channels.map((ch) => h.once(ch, 'order-shipped'));
  const sdk = new PusherServer({ appId: h.APP.id, key: h.APP.key, secret, host: '127.0.0.1', port: cpHttp, useTLS: false });
  const res = await sdk.trigger('orders', 'order-shipped', { id: 7 });
  assert.strictEqual(res.status, 200);
  for (const g of got) assert.deepStrictEqual((await g).data, { id: 7 });
  console.log('split-check: both data planes received the event');
  await h.stopAll();
}

main().then(() => process.exit(0), (e) => { console.error('split-check failed:', e); process.exit(1); });
