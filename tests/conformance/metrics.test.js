// The Prometheus endpoint (docs/metrics.md) of every binary, checked by Debian's tools: promtool
// lints the real output after real traffic, and a real Prometheus server scrapes a split cluster
// (a control plane and two data plane processes) and answers PromQL with the true connection
// count. The shipped dashboard and alert rules may only name metrics a real scrape has.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const { spawn, execFile, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const h = require('./lib/harness');

const REPO = path.resolve(__dirname, '../..');
const PROMETHEUS = '/usr/bin/prometheus';
const PROMTOOL = '/usr/bin/promtool';
const extra = [];  // processes started here (prometheus)

after(async () => {
  for (const p of extra) if (p.exitCode === null) p.kill('SIGKILL');
  await h.stopAll();
});

function get(port, urlPath) {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error('timeout')));
  });
}

async function scrape(port) {
  const r = await get(port, '/metrics');
  assert.strictEqual(r.status, 200, r.body);
  assert.match(r.headers['content-type'], /^text\/plain; version=0\.0\.4/);
  return r.body;
}

// promtool check metrics on `text`; resolves with its exit code and output.
function promtoolCheckMetrics(text) {
  return new Promise((resolve) => {
    const p = execFile(PROMTOOL, ['check', 'metrics'], (err, stdout, stderr) => {
      resolve({ code: err ? (err.code ?? 1) : 0, out: stdout + stderr });
    });
    p.stdin.end(text);
  });
}

// The value of the sample `name{labels}` (labels as written, '' for none); undefined if absent.
function value(text, name, labels = '') {
  const line = text.split('\n').find((l) => l.startsWith(labels ? `${name}{${labels}} ` : `${name} `));
  return line === undefined ? undefined : Number(line.slice(line.lastIndexOf(' ') + 1));
}

// Metric family names of an exposition (histograms by their base name).
function families(text) {
  return new Set([...text.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
}

async function assertPromtoolClean(text, what) {
  assert.ok(fs.existsSync(PROMTOOL), `${PROMTOOL} is missing: install prometheus (scripts/install-deps.sh)`);
  const r = await promtoolCheckMetrics(text);
  assert.strictEqual(r.code, 0, `promtool check metrics on ${what}:\n${r.out}\n${text}`);
  assert.strictEqual(r.out.trim(), '', `promtool lint findings on ${what}:\n${r.out}`);
}

test('relay: /metrics after real traffic passes promtool and counts what happened', async () => {
  const dataDir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'relay-metrics-'));
  const { ports: [port, grpcPort, metricsPort] } = await h.startOnFreePorts('relay', 3,
    ([p, g, m]) => ['--port', p, '--grpc-port', g, '--data-dir', dataDir, '--metrics-port', m],
    'relay ready');
  const server = { wsPort: port, httpPort: port, grpcPort, dataDir };
  // A webhook endpoint that fails its first request: one failed attempt, then delivered.
  const rx = await h.webhookReceiver(1);
  after(() => rx.close());
  const add = await h.relayctl(server, ['webhooks', 'add', '--app', 'app-id', '--url', rx.url]);
  assert.strictEqual(add.code, 0, add.stderr);
  const c = h.client(server);
  const ch = c.subscribe('metrics-one');
  await h.once(ch, 'pusher:subscription_succeeded');
  const got = h.once(ch, 'hello');
  await h.sdk(server).trigger('metrics-one', 'hello', { n: 1 });
  await got;
  const stats = await h.relayctl(server, ['stats', '--json']);  // one gRPC call (Admin)
  assert.strictEqual(stats.code, 0, stats.stderr);
  // No app credentials: the endpoint is on its own listener.
  const text = await scrape(metricsPort);
  await assertPromtoolClean(text, 'relay');
  assert.strictEqual(value(text, 'relay_connections'), 1);
  assert.strictEqual(value(text, 'relay_subscriptions'), 1);
  assert.strictEqual(value(text, 'relay_channels'), 1);
  assert.strictEqual(value(text, 'relay_app_connections', 'app="app-id"'), 1);
  // Observed right after the shard's socket writes, so possibly just after pusher-js had the event.
  await h.waitFor(async () => value(await scrape(metricsPort), 'relay_publish_latency_seconds_count') === 1,
    10000, 'publish latency observed');
  assert.strictEqual(value(text, 'relay_http_requests_total', 'route="/apps/{app}/events",status="200"'), 1);
  assert.ok(value(text, 'relay_ws_messages_sent_total') >= 3, text);  // established, succeeded, hello
  assert.ok(value(text, 'relay_ws_sent_bytes_total') > 0);
  assert.ok(value(text, 'relay_ws_messages_received_total') >= 1);  // the subscribe
  assert.strictEqual(value(text, 'relay_node_link_attached'), 1);
  assert.strictEqual(value(text, 'relay_nodes_attached'), 1);
  assert.strictEqual(value(text, 'relay_grpc_requests_total', 'method="/relay.v1.Admin/GetStats",code="OK"'), 1);
  // Which build answers (what --version prints), and the process metrics of client libraries.
  const version = execFileSync(path.join(process.env.RELAY_BIN_DIR || path.join(REPO, 'build/bin'), 'relay'), ['--version'], { encoding: 'utf8' });
  const build = /^relay_build_info\{version="([^"]*)",commit="([^"]*)"\} 1$/m.exec(text);
  assert.ok(build, text);
  assert.ok(version.includes(build[1]) && version.includes(build[2]), `${version} vs ${build[0]}`);
  assert.ok(value(text, 'process_resident_memory_bytes') > 1e6);
  assert.ok(value(text, 'process_open_fds') >= 3);  // at least the listeners and the client
  assert.ok(value(text, 'process_max_fds') >= value(text, 'process_open_fds'));
  assert.ok(Math.abs(value(text, 'process_start_time_seconds') - Date.now() / 1000) < 600);
  // A client that leaves is counted as closed by the client.
  c.disconnect();
  await h.waitFor(async () => value(await scrape(metricsPort), 'relay_connections') === 0, 10000, 'close counted');
  const closed = await scrape(metricsPort);
  assert.strictEqual(value(closed, 'relay_connections_closed_total', 'reason="client",code="none"'), 1);
  assert.strictEqual(value(closed, 'relay_subscriptions'), 0);
  assert.strictEqual(value(closed, 'relay_write_queue_bytes'), 0);
  await h.waitFor(() => rx.events.length >= 1, 15000, 'webhook delivered after a retry');
  await h.waitFor(async () => value(await scrape(metricsPort), 'relay_webhook_events_delivered_total') >= 1,
    10000, 'delivery counted');
  const hooks = await scrape(metricsPort);
  assert.strictEqual(value(hooks, 'relay_webhook_failed_attempts_total'), 1);
  assert.strictEqual(value(hooks, 'relay_webhook_events_dropped_total', 'reason="expired"'), 0);
  // An upgrade for an unknown app key is refused with 4001 and counted as such.
  const Pusher = require('pusher-js');
  const bad = new Pusher('no-such-key', { wsHost: '127.0.0.1', wsPort: port, forceTLS: false,
    enabledTransports: ['ws'], cluster: 'mt1', disableStats: true });
  try {
    await h.waitFor(async () => value(await scrape(metricsPort), 'relay_connections_refused_total', 'code="4001"') >= 1,
      10000, '4001 refusal counted');
  } finally { bad.disconnect(); }
  // Only GET /metrics is served there.
  assert.strictEqual((await get(metricsPort, '/apps/app-id/channels')).status, 404);
});

test('a bad --metrics-port is a usage error', async () => {
  for (const bin of ['relay', 'relay-controlplane', 'relay-dataplane']) {
    const r = await new Promise((resolve) => execFile(path.join(process.env.RELAY_BIN_DIR || path.join(REPO, 'build/bin'), bin),
      ['--metrics-port', '70000'], (err, stdout, stderr) => resolve({ code: err ? err.code : 0, stderr })));
    assert.strictEqual(r.code, 2, `${bin}: ${r.stderr}`);
    assert.match(r.stderr, /--metrics-port must be at most 65535/);
  }
});

// Metric names a PromQL expression uses: relay_* identifiers, histogram suffixes stripped.
function metricNames(expr) {
  return [...expr.matchAll(/\brelay_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|sum|count)$/, ''));
}

test('split cluster: Prometheus scrapes all three processes and counts the true connections', async () => {
  assert.ok(fs.existsSync(PROMETHEUS), `${PROMETHEUS} is missing: install prometheus (scripts/install-deps.sh)`);
  const dataDir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'relay-metrics-'));
  const { ports: [httpPort, grpcPort, cpMetrics] } = await h.startOnFreePorts('relay-controlplane', 3,
    ([p, g, m]) => ['--port', p, '--grpc-port', g, '--data-dir', dataDir, '--metrics-port', m],
    'controlplane ready');
  const nodes = [];
  for (const id of ['n1', 'n2']) {
    const { ports: [wsPort, metricsPort], proc } = await h.startOnFreePorts('relay-dataplane', 2,
      ([p, m]) => ['--port', p, '--control-plane', `127.0.0.1:${grpcPort}`, '--node-id', id,
        '--node-token-file', path.join(dataDir, 'node.token'), '--metrics-port', m], 'dataplane ready');
    await h.waitFor(() => proc.log().includes('attached to control plane'), 15000, `${id} attach`);
    nodes.push({ wsPort, httpPort, grpcPort, metricsPort, dp: proc });
  }
  // N clients over the two data planes, all on one channel.
  const N = 5;
  const subs = [];
  for (let i = 0; i < N; i++) {
    const c = h.client(nodes[i % 2]);
    const ch = c.subscribe('metrics-cluster');
    await h.once(ch, 'pusher:subscription_succeeded');
    subs.push(ch);
  }
  await h.flush(nodes[0], 'metrics-cluster', subs);  // one publish reaches both nodes

  const texts = { cp: await scrape(cpMetrics), n1: await scrape(nodes[0].metricsPort), n2: await scrape(nodes[1].metricsPort) };
  for (const [what, text] of Object.entries(texts)) await assertPromtoolClean(text, what);
  assert.strictEqual(value(texts.n1, 'relay_connections') + value(texts.n2, 'relay_connections'), N);
  assert.strictEqual(value(texts.cp, 'relay_nodes_attached'), 2);
  assert.strictEqual(value(texts.cp, 'relay_http_requests_total', 'route="/apps/{app}/events",status="200"'), 1);

  // A real Prometheus server scraping the three endpoints.
  const promPort = await h.freePort();
  const promDir = fs.mkdtempSync(path.join(require('node:os').tmpdir(), 'relay-prometheus-'));
  const targets = [cpMetrics, nodes[0].metricsPort, nodes[1].metricsPort].map((p) => `'127.0.0.1:${p}'`);
  fs.writeFileSync(path.join(promDir, 'prometheus.yml'),
    `global:\n  scrape_interval: 500ms\n  evaluation_interval: 500ms\n` +
    `rule_files:\n  - ${path.join(REPO, 'deploy/prometheus/relay-alerts.yml')}\n` +
    `scrape_configs:\n  - job_name: relay\n    static_configs:\n      - targets: [${targets.join(', ')}]\n`);
  const prom = spawn(PROMETHEUS, [`--config.file=${path.join(promDir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(promDir, 'data')}`, `--web.listen-address=127.0.0.1:${promPort}`],
  { stdio: ['ignore', 'pipe', 'pipe'] });
  extra.push(prom);
  let promLog = '';
  prom.stdout.on('data', (d) => { promLog += d; });
  prom.stderr.on('data', (d) => { promLog += d; });
  const query = async (q) => {
    try {
      const r = await get(promPort, `/api/v1/query?query=${encodeURIComponent(q)}`);
      if (r.status !== 200) return undefined;
      const res = JSON.parse(r.body).data.result;
      return res.length === 1 ? Number(res[0].value[1]) : undefined;
    } catch { return undefined; }
  };
  try {
    await h.waitFor(async () => (await query('sum(relay_connections)')) === N, 30000, 'sum(relay_connections) == N');
    await h.waitFor(async () => (await query('sum(relay_publish_latency_seconds_count)')) >= 2, 10000, 'publish latency counted on both nodes');
    // Each target is scraped on its own schedule: the control plane's first scrape may come last.
    await h.waitFor(async () => (await query('count(up == 1)')) === 3, 10000, 'all three targets up');
    await h.waitFor(async () => (await query('sum(relay_nodes_attached)')) === 2, 10000, 'two nodes attached');
    // The alert rules loaded, and none of them fires on a healthy cluster.
    const rules = JSON.parse((await get(promPort, '/api/v1/rules')).body).data.groups;
    assert.ok(rules.length > 0 && rules[0].rules.length >= 5, JSON.stringify(rules));
    for (const g of rules) for (const r of g.rules) assert.notStrictEqual(r.state, 'firing', `${r.name} fires`);
  } catch (e) {
    throw new Error(`${e.message}\nprometheus log:\n${promLog}`);
  }

  // The dashboard and the alert rules name only metrics a real scrape has.
  const have = new Set([...families(texts.cp), ...families(texts.n1), ...families(texts.n2)]);
  const dashboard = JSON.parse(fs.readFileSync(path.join(REPO, 'deploy/grafana/relay-dashboard.json'), 'utf8'));
  const exprs = [];
  for (const panel of dashboard.panels) for (const t of panel.targets || []) exprs.push(t.expr);
  const alerts = fs.readFileSync(path.join(REPO, 'deploy/prometheus/relay-alerts.yml'), 'utf8');
  exprs.push(...[...alerts.matchAll(/expr:\s*(.+)/g)].map((m) => m[1]));
  assert.ok(exprs.length >= 10, `dashboard and rules expressions: ${exprs.length}`);
  for (const expr of exprs) {
    for (const name of metricNames(expr)) assert.ok(have.has(name), `${name} (in "${expr}") is not in a real scrape`);
  }
  const check = await new Promise((resolve) => execFile(PROMTOOL,
    ['check', 'rules', path.join(REPO, 'deploy/prometheus/relay-alerts.yml')],
    (err, stdout, stderr) => resolve({ code: err ? err.code : 0, out: stdout + stderr })));
  assert.strictEqual(check.code, 0, check.out);
});
