// A real headless browser for tests: Debian's `chromium`, driven over the DevTools protocol on a
// pipe (--remote-debugging-pipe: fds 3 and 4, NUL-separated JSON), so no port and no WebSocket
// library are needed. Every call is bounded; close() kills the browser whatever state it is in.
'use strict';
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');

// The browser binary, or null when none is installed (tests skip with a message then).
function findChromium() {
  for (const name of ['chromium', 'chromium-browser', 'google-chrome']) {
    try {
      return execFileSync('sh', ['-c', `command -v ${name}`], { encoding: 'utf8' }).trim() || null;
    } catch (e) { /* not this one */ }
  }
  return null;
}

class Browser {
  // Starts the browser with a fresh profile and attaches to one page.
  static async launch(binary, timeoutMs = 30000) {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-chromium-'));
    const child = spawn(binary, [
      '--headless=new', '--remote-debugging-pipe', `--user-data-dir=${profile}`,
      '--no-sandbox',  // tests run as root in CI containers, where the sandbox cannot start
      '--disable-gpu', '--disable-dev-shm-usage', '--no-first-run', '--no-default-browser-check',
      '--disable-extensions', '--disable-background-networking', '--disable-sync',
      '--window-size=1280,1000', 'about:blank',
    ], { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] });
    // Whatever ends this process (a failed assertion, a timeout), the browser goes with it.
    const killOnExit = () => child.kill('SIGKILL');
    process.once('exit', killOnExit);
    child.once('exit', () => process.removeListener('exit', killOnExit));
    const b = new Browser(child, profile);
    try {
      const { targetInfos } = await b.send('Target.getTargets', {}, null, timeoutMs);
      let page = targetInfos.find((t) => t.type === 'page');
      if (!page) page = { targetId: (await b.send('Target.createTarget', { url: 'about:blank' })).targetId };
      b.session = (await b.send('Target.attachToTarget', { targetId: page.targetId, flatten: true })).sessionId;
      await b.send('Page.enable');
      await b.send('Runtime.enable');
      await b.send('Log.enable');
      return b;
    } catch (e) {
      await b.close();
      throw new Error(`${e.message}\nchromium stderr:\n${b.stderr.slice(-4000)}`);
    }
  }

  constructor(child, profile) {
    this.child = child;
    this.profile = profile;
    this.session = null;
    this.nextId = 1;
    this.pending = new Map();
    this.events = [];     // every event of the page's session: { method, params }
    this.stderr = '';
    let buf = Buffer.alloc(0);
    child.stdio[4].on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      let at;
      while ((at = buf.indexOf(0)) >= 0) {
        const msg = JSON.parse(buf.subarray(0, at).toString('utf8'));
        buf = buf.subarray(at + 1);
        this.onMessage(msg);
      }
    });
    child.stderr.on('data', (d) => { this.stderr = (this.stderr + d.toString()).slice(-20000); });
    child.stdio[3].on('error', () => {});  // the browser died: calls fail by their timeout or exit
    child.on('exit', () => {
      for (const { reject } of this.pending.values()) reject(new Error('chromium exited'));
      this.pending.clear();
    });
  }

  onMessage(msg) {
    if (msg.id !== undefined && this.pending.has(msg.id)) {
      const { resolve, reject, timer } = this.pending.get(msg.id);
      clearTimeout(timer);
      this.pending.delete(msg.id);
      if (msg.error) reject(new Error(`${msg.error.message} (${msg.error.code})`));
      else resolve(msg.result);
    } else if (msg.method) {
      this.events.push({ method: msg.method, params: msg.params });
    }
  }

  // One DevTools command, on the page's session unless `session` is null (the browser).
  send(method, params = {}, session = this.session, timeoutMs = 15000) {
    if (this.child.exitCode !== null || this.child.signalCode !== null) {
      return Promise.reject(new Error('chromium is not running'));
    }
    const id = this.nextId++;
    const msg = { id, method, params };
    if (session) msg.sessionId = session;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`${method}: no answer within ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(id, { resolve, reject, timer });
      this.child.stdio[3].write(JSON.stringify(msg) + '\0');
    });
  }

  // Evaluates `expression` in the page (awaiting a promise) and returns its value.
  async eval(expression) {
    const r = await this.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true });
    if (r.exceptionDetails) {
      throw new Error(`page threw: ${r.exceptionDetails.exception?.description || r.exceptionDetails.text}`);
    }
    return r.result.value;
  }

  // Navigates and resolves once the page's load event fired.
  async goto(url, timeoutMs = 15000) {
    const before = this.events.length;
    const r = await this.send('Page.navigate', { url });
    if (r.errorText) throw new Error(`navigation to ${url} failed: ${r.errorText}`);
    const t0 = Date.now();
    while (!this.events.slice(before).some((e) => e.method === 'Page.loadEventFired')) {
      if (Date.now() - t0 > timeoutMs) throw new Error(`${url}: no load event within ${timeoutMs} ms`);
      await new Promise((resolve) => setTimeout(resolve, 20));
    }
  }

  // A PNG of the page's viewport.
  async screenshot() {
    const { data } = await this.send('Page.captureScreenshot', { format: 'png' });
    return Buffer.from(data, 'base64');
  }

  // The browser's own log entries (CSP violations, failed loads) and console messages.
  logEntries() {
    return this.events.filter((e) => e.method === 'Log.entryAdded').map((e) => e.params.entry);
  }

  // Closes the browser: politely, then SIGKILL after a bound; removes the profile.
  async close() {
    const exited = this.child.exitCode !== null || this.child.signalCode !== null
      ? Promise.resolve()
      : new Promise((resolve) => this.child.once('exit', resolve));
    this.send('Browser.close', {}, null, 2000).catch(() => {});
    const t = setTimeout(() => this.child.kill('SIGKILL'), 3000);
    await exited;
    clearTimeout(t);
    fs.rmSync(this.profile, { recursive: true, force: true });
  }
}

module.exports = { Browser, findChromium };
