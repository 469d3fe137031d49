// The web console (relay --console, docs/console.md) in a real browser: Debian's headless
// chromium loads /console/, the admin token is entered in its form, the app shows the live
// connection of a real pusher-js client, the channel its subscriber and a presence channel its
// member, an event published from the console's form reaches the pusher-js client, an event
// triggered with the pusher SDK appears in the console's live log, the page runs under its
// Content-Security-Policy without a violation, and a screenshot is taken. Plus the HTTP
// contract without a browser: off by default, 401/400/404/405, headers, the SSE stream.
'use strict';
const { test, before, after } = require('node:test');
const assert = require('node:assert');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');
const h = require('./lib/harness');
const { Browser, findChromium } = require('./lib/browser');

const CHROMIUM = findChromium();
let relay, token;

before(async () => {
  relay = await h.startRelay(['--console']);
  token = fs.readFileSync(path.join(relay.dataDir, 'admin.token'), 'utf8').trim();
});
after(async () => { await h.stopAll(); });

// One HTTP request to `port`; resolves with { status, headers, body }.
function request(port, method, urlPath, { headers = {}, body } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: urlPath, headers, timeout: 5000 }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: data }));
    });
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: no answer in 5 s`)));
    req.on('error', reject);
    if (body !== undefined) req.write(body);
    req.end();
  });
}
const auth = () => ({ Authorization: `Bearer ${token}` });

test('off by default: /console answers 404 and the Pusher HTTP API is unaffected', async () => {
  const plain = await h.startRelay();
  const r = await request(plain.httpPort, 'GET', '/console/');
  assert.strictEqual(r.status, 404);
  const a = await request(plain.httpPort, 'GET', '/console/api/apps', { headers: auth() });
  assert.strictEqual(a.status, 404);
  await h.sdk(plain).trigger('orders', 'e', {});  // still the Pusher API
});

test('the console API: token, bad input, methods, security headers', async () => {
  const port = relay.httpPort;
  const page = await request(port, 'GET', '/console/');
  assert.strictEqual(page.status, 200);
  assert.match(page.headers['content-type'], /text\/html/);
  const csp = page.headers['content-security-policy'];
  assert.match(csp, /script-src 'self'/);
  assert.match(csp, /frame-ancestors 'none'/);
  assert.doesNotMatch(csp, /unsafe-inline/);
  assert.strictEqual(page.headers['x-content-type-options'], 'nosniff');
  assert.doesNotMatch(page.body, /<script>/);  // no inline script: the CSP would refuse it

  const none = await request(port, 'GET', '/console/api/apps');
  assert.strictEqual(none.status, 401);
  assert.strictEqual(JSON.parse(none.body).code, 401);
  const wrong = await request(port, 'GET', '/console/api/apps', { headers: { Authorization: `Bearer ${token}x` } });
  assert.strictEqual(wrong.status, 401);
  // Nothing about apps or routes before the token.
  const unknown = await request(port, 'GET', '/console/api/apps/nope/channels');
  assert.strictEqual(unknown.status, 401);

  const apps = await request(port, 'GET', '/console/api/apps', { headers: auth() });
  assert.strictEqual(apps.status, 200);
  assert.strictEqual(apps.headers['cache-control'], 'no-store');
  const listed = JSON.parse(apps.body).apps;
  assert.deepStrictEqual(listed.map((a) => a.id), [h.APP.id]);
  assert.ok(!apps.body.includes(h.APP.secret), 'no secret in the console API');

  assert.strictEqual((await request(port, 'GET', '/console/api/apps/nope/channels', { headers: auth() })).status, 404);
  const bad = await request(port, 'GET', '/console/api/apps/app-id/channels/bad%20name', { headers: auth() });
  assert.strictEqual(bad.status, 400);
  assert.match(JSON.parse(bad.body).error, /invalid channel/);
  const notJson = await request(port, 'POST', '/console/api/apps/app-id/events', { headers: auth(), body: 'x' });
  assert.strictEqual(notJson.status, 400);
  const method = await request(port, 'DELETE', '/console/api/apps', { headers: auth() });
  assert.strictEqual(method.status, 405);
  assert.strictEqual(method.headers.allow, 'GET');
  const source = await request(port, 'GET', '/console/api/apps/app-id/stream?sources=nope', { headers: auth() });
  assert.strictEqual(source.status, 400);
});

test('in headless chromium: live counts, members, publish from the form, the SDK trigger in the live log, screenshot', {
  skip: CHROMIUM ? false : 'chromium is not installed (apt-get install chromium, see scripts/install-deps.sh)',
  timeout: 120000,
}, async (t) => {
  const shots = h.tempDir();
  const browser = await Browser.launch(CHROMIUM);
  try {
    await browser.goto(`http://127.0.0.1:${relay.httpPort}/console/`);
    await h.waitFor(() => browser.eval("!!document.getElementById('login-form')"), 10000, 'the login form');
    await browser.eval(`document.getElementById('token').value = ${JSON.stringify(token)};
      document.getElementById('login-form').requestSubmit(); true`);

    // A real pusher-js client: the app's connection count goes to 1 in the page.
    const c = h.client(relay);
    const orders = c.subscribe('orders');
    await h.once(orders, 'pusher:subscription_succeeded');
    const text = (selector) => browser.eval(`document.querySelector(${JSON.stringify(selector)})?.textContent ?? null`);
    await h.waitFor(async () => (await text('#apps tr[data-app="app-id"] .connections')) === '1', 15000,
      'the app with 1 connection in the console');
    await h.waitFor(async () => (await text('#channels tr[data-channel="orders"] td:nth-child(2)')) === '1', 15000,
      'channel orders with 1 subscriber');

    // A presence member, shown when the channel is clicked.
    await h.join(relay, 'alice', 'presence-room', { name: 'Alice' });
    await h.waitFor(() => browser.eval(`(() => { const r = document.querySelector('#channels tr[data-channel="presence-room"]');
      if (r) r.click(); return !!r; })()`), 15000, 'presence-room in the channel list');
    await h.waitFor(async () => /alice/.test((await text('#members')) || ''), 15000, 'alice among the members');

    // The live log is connected (its stream registered) before anything is published.
    await h.waitFor(async () => (await text('#log-status')) === 'live', 15000, 'the live log');

    // A lifecycle event (Channels.WatchLifecycleEvents) in the same log: bob joins, with his cursor.
    await h.join(relay, 'bob', 'presence-room', { name: 'Bob' });
    await h.waitFor(() => browser.eval("!!document.querySelector('#log li.lifecycle[data-event=\"member_added\"]')"),
      15000, 'member_added in the live log');
    assert.match(await text('#log li.lifecycle[data-event="member_added"]'), /#\d+ member_added presence-room bob/);

    // Publish from the console's form: the pusher-js client gets it.
    const fromConsole = h.once(orders, 'from-console', 15000);
    await browser.eval(`document.getElementById('pub-channel').value = 'orders';
      document.getElementById('pub-event').value = 'from-console';
      document.getElementById('pub-data').value = '{"n":1}';
      document.getElementById('publish-form').requestSubmit(); true`);
    const { data } = await fromConsole;
    assert.deepStrictEqual(data, { n: 1 });
    // The event can reach pusher-js before the page has the API's answer.
    await h.waitFor(async () => (await text('#pub-result')) === 'sent', 15000, 'the form says sent');

    // Trigger with the pusher SDK: it appears in the console's live log.
    await h.sdk(relay).trigger('orders', 'from-sdk', { order: 7 });
    await h.waitFor(() => browser.eval("!!document.querySelector('#log li[data-event=\"from-sdk\"]')"), 15000,
      'the SDK trigger in the live log');
    const entry = await text('#log li[data-event="from-sdk"]');
    assert.match(entry, /orders/);
    assert.match(entry, /"order":7/);
    assert.ok(await browser.eval("!!document.querySelector('#log li[data-event=\"from-console\"]')"));

    // The channel prefix filter: a new stream that watches only `news-` channels.
    await browser.eval(`document.getElementById('log-clear').click();
      document.getElementById('log-prefix').value = 'news-';
      document.getElementById('log-filter').requestSubmit(); true`);
    await h.waitFor(async () => (await text('#log-status')) === 'live', 15000, 'the filtered live log');
    await h.sdk(relay).trigger('orders', 'filtered-out', {});
    await h.sdk(relay).trigger('news-today', 'headline', {});
    await h.waitFor(() => browser.eval("!!document.querySelector('#log li[data-event=\"headline\"]')"), 15000,
      'the news- event in the filtered log');
    assert.strictEqual(await browser.eval("document.querySelectorAll('#log li.log-entry').length"), 1);

    // Nothing the page does is refused by its own Content-Security-Policy.
    const violations = browser.logEntries().filter((e) => /Content Security Policy/i.test(e.text));
    assert.deepStrictEqual(violations, []);

    const png = await browser.screenshot();
    const file = path.join(shots, 'console.png');
    fs.writeFileSync(file, png);
    const written = fs.readFileSync(file);
    assert.ok(written.length > 0);
    assert.deepStrictEqual([...written.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    t.diagnostic(`screenshot: ${file} (${written.length} bytes)`);
  } finally {
    await browser.close();
  }
});
