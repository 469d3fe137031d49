// Logs: --log-level and --log-format on every server binary, one JSON object per line, an audit
// line per admin change naming the admin credential by id, and never a secret in any line.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const { execFile } = require('node:child_process');
const path = require('node:path');
const h = require('./lib/harness');

after(h.stopAll);

const BIN = process.env.RELAY_BIN_DIR || path.resolve(__dirname, '../../../build/bin');

function run(binary, args, env = {}) {
  return new Promise((resolve) => {
    execFile(path.join(BIN, binary), args, { timeout: 15000, env: { ...process.env, ...env } },
      (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stdout, stderr }));
  });
}

test('a bad --log-level or --log-format is refused with a message naming the flag', async () => {
  for (const binary of ['relay', 'relay-controlplane', 'relay-dataplane']) {
    const level = await run(binary, ['--log-level', 'loud']);
    assert.strictEqual(level.code, 2, `${binary}: ${level.stderr}`);
    assert.match(level.stderr, /--log-level: expected debug, info, warn or error, got 'loud'/);
    const format = await run(binary, ['--log-format', 'xml']);
    assert.strictEqual(format.code, 2, `${binary}: ${format.stderr}`);
    assert.match(format.stderr, /--log-format: expected text or json, got 'xml'/);
    const help = await run(binary, ['--help']);
    assert.match(help.stdout, /--log-level VALUE[\s\S]*RELAY_LOG_LEVEL/);
    assert.match(help.stdout, /--log-format VALUE[\s\S]*RELAY_LOG_FORMAT/);
  }
  // The environment variable is the flag's: the same check.
  const env = await run('relay', [], { RELAY_LOG_LEVEL: 'verbose' });
  assert.strictEqual(env.code, 2);
  assert.match(env.stderr, /--log-level: expected debug, info, warn or error, got 'verbose'/);
});

test('--log-level warn drops info lines but keeps the audit trail', async () => {
  const { spawn } = require('node:child_process');
  const dataDir = require('node:fs').mkdtempSync(path.join(require('node:os').tmpdir(), 'relay-logs-'));
  const [port, grpcPort] = [await h.freePort(), await h.freePort()];
  const child = spawn(path.join(BIN, 'relay'), ['--port', port, '--grpc-port', grpcPort, '--data-dir', dataDir,
    '--log-level', 'warn'].map(String), { stdio: ['ignore', 'ignore', 'pipe'] });
  let log = '';
  child.stderr.on('data', (d) => { log += d; });
  try {
    const server = { grpcPort, dataDir };
    // Up once relayctl gets an answer (the ready line is info: not printed at warn).
    await h.waitFor(async () => (await h.relayctl(server, ['apps', 'list'])).code === 0, 10000, 'relay up');
    assert.strictEqual((await h.relayctl(server, ['apps', 'update', 'app-id', '--plan', 'quiet'])).code, 0);
    await h.waitFor(() => /\[audit\] admin apps.update app=app-id/.test(log), 5000, 'the audit line');
    assert.doesNotMatch(log.replace(/.*\[audit\].*\n/g, ''), / INFO  /, log);
  } finally {
    child.kill('SIGKILL');
  }
});

test('JSON logs and the audit trail: one line per admin change, no secret in any line', { timeout: 60000 }, async () => {
  const server = await h.startRelay(['--log-format', 'json', '--log-level', 'debug']);
  const ctl = async (args) => {
    const r = await h.relayctl(server, [...args, '--json']);
    assert.strictEqual(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return JSON.parse(r.stdout || '{}');
  };
  const fs = require('node:fs');
  const adminToken = fs.readFileSync(path.join(server.dataDir, 'admin.token'), 'utf8').trim();
  // (The default app's secret is the well-known 'app-secret', also the name of a flag the log
  // mentions: the generated secrets below are the meaningful check.)
  const secrets = [adminToken];
  const app = await ctl(['apps', 'create', '--name', 'audited']);
  secrets.push(app.secret);
  await ctl(['apps', 'update', app.id, '--plan', 'pro', '--max-connections', '7']);
  const rotated = await ctl(['apps', 'rotate-secret', app.id, '--overlap', '1h']);
  secrets.push(rotated.secret);
  const token = await ctl(['tokens', 'create', '--app', app.id, '--name', 'ci']);
  secrets.push(token.secret);
  await ctl(['tokens', 'revoke', token.token.id]);
  const nodeToken = await ctl(['node-tokens', 'create', '--name', 'edge-9', '--node-id', 'edge-9']);
  secrets.push(nodeToken.secret);
  await ctl(['node-tokens', 'revoke', nodeToken.token.id]);
  const hook = await ctl(['webhooks', 'add', '--app', app.id, '--url', `http://127.0.0.1:${await h.freePort()}/hook`,
    '--header', 'X-Hook-Secret=hunter2-hook-secret']);
  secrets.push('hunter2-hook-secret');
  await ctl(['webhooks', 'remove', hook.id]);
  await ctl(['nodes', 'drain', 'embedded', '--window', '1s']);
  await ctl(['nodes', 'undrain', 'embedded']);
  await ctl(['apps', 'delete', app.id, '--yes']);
  // Traffic too: a signed trigger and a client, so the data path's lines are in the log.
  assert.strictEqual((await h.sdk(server).trigger('c', 'e', { x: 1 })).status, 200);

  const expected = ['apps.create', 'apps.update', 'apps.rotate-secret', 'tokens.create', 'tokens.revoke',
    'node-tokens.create', 'node-tokens.revoke', 'webhooks.add', 'webhooks.remove', 'nodes.drain',
    'nodes.undrain', 'apps.delete'];
  const lines = () => server.proc.log().split('\n').filter((l) => l.length > 0);
  await h.waitFor(() => {
    const audited = lines().filter((l) => l.includes('"component":"audit"'));
    return expected.every((a) => audited.some((l) => l.includes(`"action":"${a}"`)));
  }, 10000, 'an audit line for every admin change');

  // Every line is one JSON object with the four fields.
  for (const line of lines()) {
    let o;
    assert.doesNotThrow(() => { o = JSON.parse(line); }, `not JSON: ${line}`);
    assert.match(o.time, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    assert.ok(['debug', 'info', 'warn', 'error'].includes(o.level), line);
    assert.strictEqual(typeof o.component, 'string');
    assert.strictEqual(typeof o.message, 'string');
  }
  const audit = lines().map((l) => JSON.parse(l)).filter((o) => o.component === 'audit');
  const tokenId = require('node:crypto').createHash('sha256').update(adminToken).digest('hex').slice(0, 12);
  const one = (action) => {
    const found = audit.filter((o) => o.action === action);
    assert.strictEqual(found.length, 1, `${action}: ${JSON.stringify(found)}`);
    assert.strictEqual(found[0].admin_token_id, tokenId);
    return found[0];
  };
  assert.strictEqual(one('apps.create').app, app.id);
  assert.strictEqual(one('apps.update').app, app.id);
  assert.match(one('apps.update').detail, /limits\.max_connections/);
  assert.strictEqual(one('apps.rotate-secret').detail, 'overlap_seconds=3600');
  assert.strictEqual(one('tokens.create').subject, `token=${token.token.id}`);
  assert.strictEqual(one('tokens.revoke').subject, `token=${token.token.id}`);
  assert.strictEqual(one('node-tokens.create').subject, `node_token=${nodeToken.token.id}`);
  assert.strictEqual(one('webhooks.add').app, app.id);
  assert.strictEqual(one('webhooks.remove').subject, `webhook=${hook.id}`);
  assert.strictEqual(one('nodes.drain').subject, 'node=embedded');
  assert.strictEqual(one('nodes.undrain').subject, 'node=embedded');
  assert.strictEqual(one('apps.delete').app, app.id);

  // No secret, token or webhook header value in any line of the whole run.
  const all = server.proc.log();
  for (const s of secrets) {
    assert.ok(s && s.length >= 8, 'a secret to look for');
    assert.ok(!all.includes(s), `a secret or token value reached the log: ${s.slice(0, 4)}...`);
  }
});
