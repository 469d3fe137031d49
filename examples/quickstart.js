// Subscribe with pusher-js, publish with the pusher server SDK, exit once the event arrived.
// Run against a started relay: npm install pusher-js pusher && node examples/quickstart.js
const Pusher = require('pusher-js');
const PusherServer = require('pusher');

const port = Number(process.env.RELAY_PORT || 6001); // relay's --port (RELAY_PORT)

// Browser or Node: subscribe
const client = new Pusher('app-key', {
  wsHost: '127.0.0.1', wsPort: port, forceTLS: false, enabledTransports: ['ws'], cluster: 'mt1',
});
const channel = client.subscribe('orders');
channel.bind('order-shipped', (data) => {
  console.log('received order-shipped', data); // { id: 7 }
  client.disconnect();
  process.exit(0);
});

// Backend: publish, once the subscription is confirmed (an event published before that is not
// delivered to this client)
const server = new PusherServer({
  appId: 'app-id', key: 'app-key', secret: 'app-secret', host: '127.0.0.1', port: String(port),
  useTLS: false,
});
channel.bind('pusher:subscription_succeeded', async () => {
  try {
    await server.trigger('orders', 'order-shipped', { id: 7 });
  } catch (e) {
    console.error('trigger failed:', e.status || e.message);
    process.exit(1);
  }
});

setTimeout(() => {
  console.error('no event within 10 s: is relay running on port', port, '?');
  process.exit(1);
}, 10000);
