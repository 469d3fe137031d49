// A Node microservice that reacts to what clients do without running a webhook endpoint: it
// watches the app's private- channels over Relay's public gRPC API
// (relay.v1.Channels.WatchChannelEvents) and prints every event, the `client-` events that
// browsers send and the events the backend publishes, in the order Relay accepted them.
// docs/grpc-api.md walks through it; tests/conformance/watch.test.js runs it.
//
//   npm install @grpc/grpc-js @grpc/proto-loader
//   RELAY_GRPC=127.0.0.1:50051 RELAY_APP_KEY=app-key RELAY_APP_SECRET=app-secret \
//     node examples/grpc-watch.js
'use strict';
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

// The .proto files of the Relay release (proto/ in its source tree).
const PROTO_DIR = process.env.RELAY_PROTO_DIR || path.join(__dirname, '..', 'proto');
const { Channels } = grpc.loadPackageDefinition(protoLoader.loadSync(
  path.join(PROTO_DIR, 'relay/v1/public.proto'),
  { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String })).relay.v1;

const client = new Channels(process.env.RELAY_GRPC || '127.0.0.1:50051',
  grpc.credentials.createInsecure());  // grpc.credentials.createSsl() with --grpc-tls-cert
// The app's key and secret (or `authorization: Bearer <API token>`), sent with every call.
const credentials = new grpc.Metadata();
credentials.set('x-relay-key', process.env.RELAY_APP_KEY || 'app-key');
credentials.set('x-relay-secret', process.env.RELAY_APP_SECRET || 'app-secret');

function onEvent(e) {
  if (e.source === 'SOURCE_CLIENT') {
    // data is the JSON the browser sent; user_id is set on presence channels.
    console.log(`client ${e.channel} ${e.event} ${e.data} from socket ${e.socket_id}` +
      (e.user_id ? ` (user ${e.user_id})` : ''));
  } else {
    console.log(`api ${e.channel} ${e.event} ${e.data}`);
  }
}

// Refusals that retrying cannot fix; anything else (a control plane restart: UNAVAILABLE, this
// watcher cut for reading too slowly: RESOURCE_EXHAUSTED) is retried with a growing delay.
// Events accepted while no watch is open are not replayed.
const FINAL = [grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.NOT_FOUND,
  grpc.status.INVALID_ARGUMENT];
let retryMs = 200;

function watch() {
  const call = client.WatchChannelEvents(
    { app: process.env.RELAY_APP || 'app-id', prefix: 'private-' }, credentials);
  // The response headers come once Relay registered the watcher: from here on nothing is missed.
  call.on('metadata', () => {
    retryMs = 200;
    console.log('watching');
  });
  call.on('data', onEvent);
  call.on('error', (err) => {
    if (FINAL.includes(err.code)) {
      console.error(`watch refused: ${err.details}`);
      process.exit(1);
    }
    console.error(`watch ended: ${err.details}; watching again in ${retryMs} ms`);
    setTimeout(watch, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  });
}

watch();
process.on('SIGTERM', () => {
  client.close();
  process.exit(0);
});
