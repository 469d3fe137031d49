// The README runs as written: its pusher-js + pusher block is examples/quickstart.js byte for byte,
// and that file, run with node, receives its event from a real relay started the README's way
// (`scripts/run.sh`, i.e. build/bin/relay with no flags; free ports given through the
// environment, as the README says every flag can be).
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const { execFile } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./lib/harness');

after(h.stopAll);

const ROOT = path.resolve(__dirname, '../..');
const EXAMPLE = path.join(ROOT, 'examples/quickstart.js');

test('the README quickstart block is examples/quickstart.js byte for byte', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  const example = fs.readFileSync(EXAMPLE, 'utf8');
  assert.ok(readme.includes('```js\n' + example + '```\n'),
    'README.md must contain examples/quickstart.js verbatim in a ```js block');
});

test('the README start command is scripts/run.sh, which starts build/bin/relay with its flags', () => {
  const readme = fs.readFileSync(path.join(ROOT, 'README.md'), 'utf8');
  assert.match(readme, /^scripts\/run\.sh +#/m);
  const run = fs.readFileSync(path.join(ROOT, 'scripts/run.sh'), 'utf8');
  assert.match(run, /^exec build\/bin\/relay "\$@"$/m);
});

// relay as scripts/run.sh starts it (no flags), off the default ports and ./relay-data through
// the environment. Resolves with its client port.
async function startRelayTheReadmeWay() {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-readme-'));
  for (let attempt = 1; ; attempt++) {
    const port = await h.freePort();
    const grpcPort = await h.freePort();
    const env = { RELAY_PORT: String(port), RELAY_GRPC_PORT: String(grpcPort), RELAY_DATA_DIR: dataDir };
    try {
      await h.startOnFreePorts('relay', 0, () => [], 'relay ready', env);
      return port;
    } catch (e) {
      if (attempt >= 5 || !/cannot listen|address already in use/i.test(e.message)) throw e;
    }
  }
}

test('examples/quickstart.js receives its event from relay and exits 0', async () => {
  const port = await startRelayTheReadmeWay();
  const r = await new Promise((resolve) => {
    execFile(process.execPath, [EXAMPLE], {
      timeout: 20000,
      // `npm install pusher-js pusher` of the README: the conformance suite's own install.
      env: { ...process.env, RELAY_PORT: String(port), NODE_PATH: path.join(__dirname, 'node_modules') },
    }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
  assert.strictEqual(r.code, 0, `exit ${r.code}\n${r.stdout}\n${r.stderr}`);
  assert.match(r.stdout, /received order-shipped \{ id: 7 \}/);
});

test('examples/quickstart.js fails (exit 1) when no relay listens', async () => {
  const port = await h.freePort();
  const r = await new Promise((resolve) => {
    execFile(process.execPath, [EXAMPLE], {
      timeout: 20000,
      env: { ...process.env, RELAY_PORT: String(port), NODE_PATH: path.join(__dirname, 'node_modules') },
    }, (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
  assert.strictEqual(r.code, 1, `${r.stdout}\n${r.stderr}`);
  assert.match(r.stderr, /no event within 10 s/);
});
