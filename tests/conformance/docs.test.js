// The documentation runs: docs/operations.md's ```sh blocks, in order, against a fresh relay on
// free ports; and every --flag the docs and README name exists in the --help of the binary it is
// used with, so a renamed or removed flag fails here instead of in an operator's terminal.
'use strict';
const { test, after } = require('node:test');
const assert = require('node:assert');
const { spawn, execFileSync } = require('node:child_process');
const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const h = require('./lib/harness');

after(h.stopAll);

const ROOT = path.resolve(__dirname, '../..');
const BIN = process.env.RELAY_BIN_DIR || path.resolve(ROOT, 'build/bin');
const BINARIES = ['relay', 'relay-controlplane', 'relay-dataplane', 'relayctl', 'relay-bench'];

// The fenced blocks of a markdown file: { lang, line (1-based, of the fence), text }.
function blocks(markdown) {
  const out = [];
  const lines = markdown.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\w*)\s*$/.exec(lines[i]);
    if (!open) continue;
    const start = i;
    const body = [];
    for (i++; i < lines.length && !/^```\s*$/.test(lines[i]); i++) body.push(lines[i]);
    out.push({ lang: open[1], line: start + 1, text: body.join('\n') });
  }
  return out;
}

test('docs/operations.md: every sh block runs, in order, against a fresh relay', { timeout: 180000 }, async () => {
  const doc = fs.readFileSync(path.join(ROOT, 'docs/operations.md'), 'utf8');
  const runnable = blocks(doc).filter((b) => b.lang === 'sh');
  assert.ok(runnable.length >= 8, 'docs/operations.md lost its runnable blocks');
  // One shell, as an operator pasting the blocks would have; each block announces itself so a
  // failure names its line in the doc.
  const script = ['set -euo pipefail',
    ...runnable.map((b) => `echo "### docs/operations.md:${b.line}" >&2\n${b.text}`),
    'echo "### done" >&2'].join('\n');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-docs-'));
  const [port, grpcPort] = [await h.freePort(), await h.freePort()];
  const env = { PATH: `${BIN}:${process.env.PATH}`, HOME: dir, PORT: String(port), GRPC_PORT: String(grpcPort) };
  const child = spawn('bash', ['-c', script], { cwd: dir, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d) => { stdout += d; });
  child.stderr.on('data', (d) => { stderr += d; });
  const code = await new Promise((resolve) => {
    const timer = setTimeout(() => { try { process.kill(-child.pid, 'SIGKILL'); } catch { /* gone */ } resolve('timeout'); }, 150000);
    child.on('exit', (c) => { clearTimeout(timer); resolve(c); });
  });
  // Whatever the doc started in the background (a relay) goes with the shell's process group.
  try { process.kill(-child.pid, 'SIGKILL'); } catch { /* already gone */ }
  const where = (stderr.match(/### docs\/operations\.md:\d+/g) || []).pop() || '(before the first block)';
  let log = '';
  try { log = fs.readFileSync(path.join(dir, 'relay.log'), 'utf8').slice(-3000); } catch { /* none */ }
  assert.strictEqual(code, 0,
    `the block at ${where.slice(4)} failed (exit ${code}).\n--- stderr:\n${stderr.slice(-3000)}\n--- stdout:\n${stdout.slice(-2000)}\n--- relay.log:\n${log}`);
  assert.match(stderr, /### done/);
});

// relayctl's flags depend on the command: `relayctl apps update --help` lists those of apps update.
function helpOf(binary, words) {
  const file = path.join(BIN, binary);
  if (!fs.existsSync(file)) return null;
  try {
    return execFileSync(file, [...words, '--help'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  } catch (e) {
    return `${e.stdout || ''}`;
  }
}

const RELAYCTL_GROUPS = ['apps', 'tokens', 'nodes', 'node-tokens', 'webhooks'];
const RELAYCTL_SINGLE = ['publish', 'channels', 'channel', 'users', 'send-to-user', 'terminate', 'stats'];

// The command words after `relayctl` in `args` ("apps update", "publish").
function relayctlWords(args) {
  const words = args.filter((a) => !a.startsWith('-'));
  for (let i = 0; i < words.length; i++) {
    if (RELAYCTL_GROUPS.includes(words[i]) && words[i + 1]) return [words[i], words[i + 1]];
    if (RELAYCTL_SINGLE.includes(words[i])) return [words[i]];
  }
  return [];
}

// Every place a flag is named: { file, line, flag, binary, words } where binary is the Relay
// binary the command names before it (null: prose or another tool's command line).
function flagUses(file) {
  const text = fs.readFileSync(path.join(ROOT, file), 'utf8');
  const uses = [];
  const lines = text.split('\n');
  let inFence = false;
  let fenceLang = '';
  for (let i = 0; i < lines.length; i++) {
    const fence = /^```(\w*)/.exec(lines[i]);
    if (fence) { inFence = !inFence; fenceLang = inFence ? fence[1] : ''; continue; }
    // A command: a code line (with its continuation lines), or an inline `code` span in prose.
    let commands;
    if (inFence) {
      if (['js', 'json', 'javascript', 'yaml', 'promql'].includes(fenceLang)) continue;
      let cmd = lines[i];
      while (cmd.endsWith('\\') && i + 1 < lines.length) cmd = cmd.slice(0, -1) + ' ' + lines[++i];
      commands = [cmd.replace(/(^|\s)#.*$/, '')];  // a shell comment is prose about the command
    } else {
      commands = [...lines[i].matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    }
    for (const cmd of commands) {
      // Command separators start a new command (a; b, a && b, a | b).
      for (const part of cmd.split(/;|&&|\|\||\|/)) {
        const tokens = part.trim().split(/\s+/);
        let binary = null;
        let start = 0;
        // Another tool's command line (docker run --init, kubectl wait --for): its flags are its
        // own, until a Relay binary appears in it (kubectl exec POD -- relayctl --server).
        let external = false;
        for (let t = 0; t < tokens.length; t++) {
          const base = path.basename(tokens[t].replace(/^["'$(]+/, ''));
          if (binary === null && EXTERNAL_COMMANDS.has(base)) external = true;
          if (BINARIES.includes(base)) { binary = base; start = t; continue; }
          const m = /^--([a-z][a-z0-9-]*)/.exec(tokens[t]);
          if (!m || (external && binary === null)) continue;
          uses.push({ file, line: i + 1, flag: m[1], binary,
            words: binary === 'relayctl' ? relayctlWords(tokens.slice(start + 1, t)) : [] });
        }
      }
    }
  }
  return uses;
}

test('every --flag named in docs/*.md and README.md exists in the --help of its binary', () => {
  for (const b of BINARIES) {
    assert.ok(fs.existsSync(path.join(BIN, b)), `${BIN}/${b} is missing: build every binary (ninja -C build) before this test`);
  }
  const files = ['README.md', ...fs.readdirSync(path.join(ROOT, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`)];
  const helps = new Map();
  const help = (binary, words) => {
    const key = [binary, ...words].join(' ');
    if (!helps.has(key)) helps.set(key, helpOf(binary, words));
    return helps.get(key);
  };
  const has = (text, flag) => text !== null && new RegExp(`--${flag}(?![a-z0-9-])`).test(text);
  // Every Relay binary's flags (relayctl: every command's), for flags named in prose.
  const all = () => {
    const texts = BINARIES.filter((b) => b !== 'relayctl').map((b) => help(b, []));
    texts.push(help('relayctl', []));
    for (const g of RELAYCTL_GROUPS) {
      for (const m of (help('relayctl', []) || '').matchAll(new RegExp(`^  ${g} ([a-z-]+)`, 'gm'))) {
        texts.push(help('relayctl', [g, m[1]]));
      }
    }
    for (const s of RELAYCTL_SINGLE) texts.push(help('relayctl', [s]));
    return texts.filter((t) => t !== null).join('\n');
  };
  let every = null;
  const missing = [];
  for (const file of files) {
    for (const use of flagUses(file)) {
      if (use.flag === 'help') continue;
      if (use.binary) {
        const text = help(use.binary, use.words);
        if (!has(text, use.flag)) {
          missing.push(`${use.file}:${use.line}: --${use.flag} is not in \`${[use.binary, ...use.words, '--help'].join(' ')}\``);
        }
      } else {
        // Prose (`--drain-window-ms`) or another tool's command (curl, perf): it must be a flag of
        // some Relay binary, or be listed here as another tool's.
        if (OTHER_TOOLS.has(use.flag)) continue;
        if (every === null) every = all();
        if (!has(every, use.flag)) {
          missing.push(`${use.file}:${use.line}: --${use.flag} is not a flag of any Relay binary (none of their --help lists it)`);
        }
      }
    }
  }
  assert.deepStrictEqual(missing, [],
    `Documented flags that the binaries do not have (fix the doc, or the flag, or if it belongs to another tool add it to OTHER_TOOLS in tests/conformance/docs.test.js):\n${missing.join('\n')}`);
});

// Commands whose flags the docs use on their own command lines (not checked against Relay's).
const EXTERNAL_COMMANDS = new Set(['docker', 'podman', 'podman-compose', 'kubectl', 'systemctl',
  'git', 'certbot', 'RUN', 'openssl', 'grpcurl', 'iptables']);

// Flags of tools other than Relay's that the docs name outside a command line of that tool.
const OTHER_TOOLS = new Set([
  'call-graph',  // perf record (docs/benchmarks.md)
  'test-force-exit', 'test-concurrency', 'test-reporter',  // node --test
  'deploy-hook',  // certbot (docs/tls.md)
  'heartbeat-interval', 'election-timeout', 'auto-compaction-mode',  // etcd (docs/etcd.md)
  'max-txn-ops', 'max-request-bytes',  // etcd (docs/scaling.md, docs/webhooks.md)
  'gtest',  // --gtest_filter of a GoogleTest binary (docs/webhooks.md)
  'auto-compaction-retention',
]);
