// Test harness: a real etcd cluster (1 or 3 members of Debian's `etcd`, RELAY_ETCD_BIN for another
// binary) on free 127.0.0.1 ports, each member with its own temporary data dir; the same as
// tests/testutil/etcd_cluster.h for the C++ tests. Every wait is bounded. A member can be killed
// (SIGKILL), stopped (SIGSTOP), continued (SIGCONT) and restarted on its data dir and ports.
//
//   const etcd = require('./lib/etcd');
//   after(etcd.stopAll);
//   const cluster = await etcd.startCluster(3);
//   ... `--etcd-endpoints ${cluster.endpointsFlag}` ...
//   await cluster.kill(await cluster.raftLeader());
'use strict';
const { spawn } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const { freePort, waitFor } = require('./harness');

const ETCD = process.env.RELAY_ETCD_BIN || '/usr/bin/etcd';
const clusters = new Set();

// One GET on 127.0.0.1:port, bounded; resolves with the body or null.
function get(port, urlPath, timeoutMs = 1000) {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: urlPath, timeout: timeoutMs }, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve(body));
      res.on('error', () => resolve(null));
    });
    req.on('timeout', () => { req.destroy(); resolve(null); });
    req.on('error', () => resolve(null));
  });
}

class EtcdCluster {
  constructor(size) {
    this.root = fs.mkdtempSync(path.join(os.tmpdir(), 'relay-etcd-'));
    this.token = `relay-test-${crypto.randomBytes(6).toString('hex')}`;
    this.members = [];
    this.size = size;
  }

  // host:port of every member's client URL, and as --etcd-endpoints takes them.
  get endpoints() { return this.members.map((m) => `127.0.0.1:${m.clientPort}`); }
  get endpointsFlag() { return this.endpoints.join(','); }

  async allocate() {
    this.members = [];
    for (let i = 0; i < this.size; i++) {
      const dir = path.join(this.root, `m${i}`);
      fs.mkdirSync(dir, { recursive: true });
      this.members.push({ name: `m${i}`, dir, clientPort: await freePort(), peerPort: await freePort(), child: null, log: '' });
    }
  }

  spawn(i, initial) {
    const m = this.members[i];
    const client = `http://127.0.0.1:${m.clientPort}`;
    const peer = `http://127.0.0.1:${m.peerPort}`;
    const cluster = this.members.map((p) => `${p.name}=http://127.0.0.1:${p.peerPort}`).join(',');
    const args = [
      '--name', m.name, '--data-dir', path.join(m.dir, 'data'),
      '--listen-client-urls', client, '--advertise-client-urls', client,
      '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
      '--initial-cluster', cluster, '--initial-cluster-token', this.token,
      '--initial-cluster-state', initial ? 'new' : 'existing',
      // Raft timings for a LAN (docs/etcd.md): a lost raft leader is replaced in 0.5-1 s, well
      // inside Relay's 2 s leader lease.
      '--heartbeat-interval', '50', '--election-timeout', '500',
      '--logger', 'zap', '--log-outputs', 'stderr', '--log-level', 'warn',
    ];
    const child = spawn(ETCD, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    m.child = child;
    m.exited = false;
    const onData = (d) => { m.log = (m.log + d.toString()).slice(-8000); };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('error', (e) => { m.log += `\n${e.message}`; m.exited = true; });
    child.on('exit', () => { m.exited = true; });
  }

  // GET /health says {"health":"true"}: the member has a raft leader.
  async healthy(i) {
    const body = await get(this.members[i].clientPort, '/health');
    return body !== null && body.includes('"health":"true"');
  }

  async waitHealthy(which, timeoutMs) {
    try {
      await waitFor(async () => {
        // An exited member ends the wait at once (reported below).
        if (which.some((i) => this.members[i].exited)) return true;
        for (const i of which) if (!(await this.healthy(i))) return false;
        return true;
      }, timeoutMs, 'etcd members healthy');
    } catch (e) {
      const logs = which.map((i) => `--- member ${i}${this.members[i].exited ? ' (exited)' : ''}:\n${this.members[i].log}`).join('\n');
      throw new Error(`etcd not healthy within ${timeoutMs} ms:\n${logs}`);
    }
    for (const i of which) {
      if (this.members[i].exited) throw new Error(`etcd member ${i} exited:\n${this.members[i].log}`);
    }
  }

  // The member that is the raft leader now (each member's /metrics), or -1.
  async raftLeader() {
    for (let i = 0; i < this.members.length; i++) {
      if (!this.running(i)) continue;
      const body = await get(this.members[i].clientPort, '/metrics');
      if (body && /\netcd_server_is_leader 1/.test(body)) return i;
    }
    return -1;
  }

  running(i) { const m = this.members[i]; return m.child !== null && !m.exited; }

  // SIGKILL; resolves once the member is gone.
  async kill(i) {
    const m = this.members[i];
    if (!this.running(i)) return;
    const gone = new Promise((resolve) => m.child.once('exit', resolve));
    m.child.kill('SIGKILL');
    await gone;
  }

  stop(i) { if (this.running(i)) this.members[i].child.kill('SIGSTOP'); }
  cont(i) { if (this.running(i)) this.members[i].child.kill('SIGCONT'); }

  // Starts member i again on its data dir and ports; resolves once it is healthy.
  async restart(i, timeoutMs = 20000) {
    await this.kill(i);
    this.spawn(i, false);
    await this.waitHealthy([i], timeoutMs);
  }

  // Kills every member and removes the data dirs.
  async close() {
    await Promise.all(this.members.map((_, i) => this.kill(i)));
    fs.rmSync(this.root, { recursive: true, force: true });
    clusters.delete(this);
  }
}

// Starts `size` members and resolves once each is healthy. A port taken between being picked and
// being bound makes etcd exit: then it tries again with new ports. A member that exited at once
// is taken for that too, since its 'exit' can come before its log says why.
async function startCluster(size = 3, timeoutMs = 20000) {
  if (!fs.existsSync(ETCD)) throw new Error(`${ETCD} is missing: run scripts/install-deps.sh (it installs etcd-server)`);
  const cluster = new EtcdCluster(size);
  clusters.add(cluster);
  for (let attempt = 1; ; attempt++) {
    await cluster.allocate();
    for (let i = 0; i < size; i++) cluster.spawn(i, true);
    try {
      await cluster.waitHealthy([...Array(size).keys()], timeoutMs);
      return cluster;
    } catch (e) {
      const exited = cluster.members.some((m) => m.exited);  // before the kills below
      await Promise.all(cluster.members.map((_, i) => cluster.kill(i)));
      if (attempt >= 3 || !(exited || /address already in use|bind/i.test(e.message))) {
        await cluster.close();
        throw e;
      }
      fs.rmSync(cluster.root, { recursive: true, force: true });
      fs.mkdirSync(cluster.root, { recursive: true });
    }
  }
}

// Members must not outlive the test process, even when it ends without after() running.
process.on('exit', () => {
  for (const c of clusters) for (const m of c.members) if (m.child && !m.exited) m.child.kill('SIGKILL');
});

// Kills every cluster started here (for after()).
async function stopAll() {
  await Promise.all([...clusters].map((c) => c.close()));
}

module.exports = { startCluster, stopAll };
