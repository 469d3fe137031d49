// A Node microservice that follows an app's lifecycle events -- channels occupied and vacated,
// presence members added and removed, client events, cache misses, subscription counts: what
// webhooks would POST -- over Relay's public gRPC API (relay.v1.Channels.WatchLifecycleEvents),
// without losing any across its own restarts or the control plane's. It saves the cursor of each
// event it handled and resumes after it; it handles each cursor at most once.
// docs/grpc-api.md walks through it; tests/conformance/lifecycle.test.js runs it.
//
//   npm install @grpc/grpc-js @grpc/proto-loader
//   RELAY_GRPC=127.0.0.1:50051 RELAY_APP_KEY=app-key RELAY_APP_SECRET=app-secret \
//     RELAY_CURSOR_FILE=./lifecycle.cursor node examples/grpc-lifecycle.js
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_DIR = process.env.RELAY_PROTO_DIR || path.join(__dirname, '..', 'proto');
const { Channels } = grpc.loadPackageDefinition(protoLoader.loadSync(
  path.join(PROTO_DIR, 'relay/v1/public.proto'),
  { includeDirs: [PROTO_DIR], keepCase: true, longs: String, enums: String })).relay.v1;

const client = new Channels(process.env.RELAY_GRPC || '127.0.0.1:50051',
  grpc.credentials.createInsecure());
const credentials = new grpc.Metadata();
credentials.set('x-relay-key', process.env.RELAY_APP_KEY || 'app-key');
credentials.set('x-relay-secret', process.env.RELAY_APP_SECRET || 'app-secret');

// The last cursor handled, kept across restarts of this service. Store it with the effect of the
// event (same database transaction) to handle each event exactly once.
const CURSOR_FILE = process.env.RELAY_CURSOR_FILE || 'lifecycle.cursor';
let cursor = fs.existsSync(CURSOR_FILE) ? fs.readFileSync(CURSOR_FILE, 'utf8').trim() : null;

function handle(e) {
  // Cursors only grow; one at or below the saved one was handled already (the dedup rule).
  if (cursor !== null && BigInt(e.cursor) <= BigInt(cursor)) return;
  const who = e.user_id ? ` user ${e.user_id}` : '';
  const what = e.name === 'client_event' ? ` ${e.event} ${e.data}` : '';
  console.log(`#${e.cursor} ${e.name} ${e.channel}${who}${what}`);
  cursor = e.cursor;
  fs.writeFileSync(CURSOR_FILE, cursor);
}

let retryMs = 200;
function watch() {
  const request = { app: process.env.RELAY_APP || 'app-id' };
  // No cursor yet: start with what happens from now on. Otherwise: everything after it.
  if (cursor !== null) request.since_cursor = cursor;
  const call = client.WatchLifecycleEvents(request, credentials);
  call.on('metadata', () => {
    retryMs = 200;
    console.log(cursor === null ? 'watching' : `watching after #${cursor}`);
  });
  call.on('data', handle);
  call.on('error', (err) => {
    if (err.code === grpc.status.OUT_OF_RANGE) {
      // The events after our cursor are gone (older than the retention): rebuild state from
      // ListChannels / ListPresenceUsers, then follow live events. Here: give up loudly.
      console.error(`cursor too old: ${err.details}`);
      process.exit(2);
    }
    if ([grpc.status.UNAUTHENTICATED, grpc.status.PERMISSION_DENIED, grpc.status.NOT_FOUND,
      grpc.status.INVALID_ARGUMENT].includes(err.code)) {
      console.error(`watch refused: ${err.details}`);
      process.exit(1);
    }
    // A control plane restart (UNAVAILABLE), too slow (RESOURCE_EXHAUSTED): resume, nothing lost.
    console.error(`watch ended: ${err.details}; resuming in ${retryMs} ms`);
    setTimeout(watch, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  });
}

watch();
process.on('SIGTERM', () => {
  client.close();
  process.exit(0);
});
