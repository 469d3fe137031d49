// Relay web console: plain JS, no framework. Talks only to /console/api/ on this origin with the
// admin token in an Authorization header (never in a URL); the token lives in sessionStorage,
// so it is gone with the tab. Everything from the server is rendered with textContent.
'use strict';
(() => {
  const TOKEN_KEY = 'relay-console-token';
  const REFRESH_MS = 2000;
  const LOG_ENTRIES = 300;        // the log keeps the newest entries only
  const LOG_BUFFER = 1 << 20;     // an unterminated SSE block longer than this ends the stream
  const $ = (id) => document.getElementById(id);
  const enc = encodeURIComponent;

  let token = sessionStorage.getItem(TOKEN_KEY) || '';
  let app = null;       // the selected app's id
  let channel = null;   // the selected channel
  let refreshTimer = null;
  let log = null;       // { abort: AbortController } of the live log stream

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  async function api(path, options = {}) {
    const res = await fetch('/console/api/' + path, {
      ...options,
      cache: 'no-store',
      headers: { ...(options.headers || {}), Authorization: 'Bearer ' + token },
    });
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (res.status === 401) {
      signOut('The admin token was refused.');
      throw new ApiError(401, 'unauthenticated');
    }
    if (!res.ok) throw new ApiError(res.status, (body && body.error) || res.statusText);
    return body;
  }

  function el(tag, text, cls) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (cls) e.className = cls;
    return e;
  }

  function setStatus(text, live) {
    $('status').textContent = text;
    $('status').classList.toggle('live', !!live);
  }

  // --- sign in / out --------------------------------------------------------------------------

  function signOut(message) {
    token = '';
    sessionStorage.removeItem(TOKEN_KEY);
    stopLog();
    clearInterval(refreshTimer);
    refreshTimer = null;
    app = null;
    channel = null;
    $('workspace').hidden = true;
    $('sign-out').hidden = true;
    $('login').hidden = false;
    $('login-error').textContent = message || '';
    setStatus('signed out');
  }

  async function signIn() {
    try {
      await refreshApps();
    } catch (e) {
      if (e.status !== 401) $('login-error').textContent = e.message;
      return;
    }
    $('login').hidden = true;
    $('workspace').hidden = false;
    $('sign-out').hidden = false;
    setStatus('connected', true);
    refreshTimer = setInterval(refresh, REFRESH_MS);
  }

  async function refresh() {
    try {
      await refreshApps();
      if (app) await refreshChannels();
      if (app && channel) await showChannel(channel);
      setStatus('connected', true);
    } catch (e) {
      if (e.status !== 401) setStatus('error: ' + e.message);
    }
  }

  // --- apps, channels, members ----------------------------------------------------------------

  async function refreshApps() {
    const { apps } = await api('apps');
    const tbody = $('apps').tBodies[0];
    tbody.replaceChildren(...apps.map((a) => {
      const tr = el('tr');
      tr.dataset.app = a.id;
      tr.append(el('td', a.id), el('td', a.name), el('td', a.enabled ? 'yes' : 'no'),
        el('td', a.connections, 'num connections'), el('td', a.channels, 'num'));
      if (a.id === app) tr.classList.add('selected');
      tr.addEventListener('click', () => selectApp(a.id));
      return tr;
    }));
    if (!app && apps.length === 1) selectApp(apps[0].id);
  }

  function selectApp(id) {
    if (app === id) return;
    app = id;
    channel = null;
    for (const tr of $('apps').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.app === id);
    $('app-title').textContent = id;
    $('app-panel').hidden = false;
    $('publish-panel').hidden = false;
    $('log-panel').hidden = false;
    $('log').replaceChildren();
    $('channel-detail').replaceChildren(el('p', 'Click a channel for its details and presence members.', 'hint'));
    refreshChannels().catch(() => {});
    startLog();
  }

  async function refreshChannels() {
    const { channels } = await api(`apps/${enc(app)}/channels`);
    const tbody = $('channels').tBodies[0];
    tbody.replaceChildren(...channels.map((c) => {
      const tr = el('tr');
      tr.dataset.channel = c.name;
      tr.append(el('td', c.name), el('td', c.subscription_count, 'num'),
        el('td', c.user_count === undefined ? '' : c.user_count, 'num'));
      if (c.name === channel) tr.classList.add('selected');
      tr.addEventListener('click', () => { channel = c.name; showChannel(c.name).catch(() => {}); });
      return tr;
    }));
  }

  async function showChannel(name) {
    const base = `apps/${enc(app)}/channels/${enc(name)}`;
    const c = await api(base);
    const users = c.presence ? (await api(base + '/users')).users : null;
    if (channel !== name) return;  // another channel was clicked meanwhile
    for (const tr of $('channels').tBodies[0].rows) tr.classList.toggle('selected', tr.dataset.channel === name);
    const box = $('channel-detail');
    const dl = el('dl');
    const add = (k, v) => dl.append(el('dt', k), el('dd', v));
    add('Channel', c.name);
    add('Occupied', c.occupied ? 'yes' : 'no');
    add('Subscribers', c.subscription_count);
    if (c.presence) add('Users', c.user_count);
    if (c.cache !== undefined) add('Cached event', c.cache ? `${c.cache.event}: ${c.cache.data}` : 'none');
    const parts = [dl];
    if (users) {
      parts.push(el('h3', 'Presence members'));
      const ul = el('ul');
      ul.id = 'members';
      for (const u of users) {
        ul.append(el('li', u.user_info === undefined ? u.id : `${u.id} ${JSON.stringify(u.user_info)}`));
      }
      parts.push(ul);
    }
    box.replaceChildren(...parts);
  }

  // --- publish --------------------------------------------------------------------------------

  async function publish(ev) {
    ev.preventDefault();
    const result = $('pub-result');
    result.className = '';
    result.textContent = 'sending...';
    try {
      await api(`apps/${enc(app)}/events`, {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ channel: $('pub-channel').value, event: $('pub-event').value,
          data: $('pub-data').value }),
      });
      result.textContent = 'sent';
    } catch (e) {
      result.className = 'error';
      result.textContent = `refused (${e.status}): ${e.message}`;
    }
  }

  // --- live log (Server-Sent Events over fetch, so the token travels in a header) ---------------

  function stopLog() {
    if (log) log.abort.abort();
    log = null;
    $('log-status').textContent = 'off';
    $('log-status').classList.remove('live');
  }

  function addEntry(node) {
    const list = $('log');
    list.prepend(node);
    while (list.childElementCount > LOG_ENTRIES) list.lastElementChild.remove();
  }

  function onSse(event, data) {
    let value = null;
    try { value = JSON.parse(data); } catch (e) { return; }
    if (event === 'open') {
      $('log-status').textContent = 'live';
      $('log-status').classList.add('live');
    } else if (event === 'end') {
      addEntry(el('li', `stream ended (${value.source}, ${value.code}): ${value.error}`, 'end'));
    } else if (event === 'lifecycle') {
      // A lifecycle event (channel_occupied, member_added, ...), with its cursor.
      const li = el('li');
      li.className = 'log-entry lifecycle';
      const when = value.time_ms ? new Date(value.time_ms) : new Date();
      let detail = value.user_id || '';
      if (value.name === 'subscription_count') detail = String(value.subscription_count);
      if (value.name === 'client_event') detail = `${value.event} ${value.data}`;
      li.append(el('span', when.toISOString().slice(11, 23) + ' '), el('span', 'lifecycle', 'src lifecycle'),
        el('span', ` #${value.cursor} ${value.name} ${value.channel || ''} `), el('span', detail, 'data'));
      li.dataset.event = value.name;
      li.dataset.channel = value.channel || '';
      addEntry(li);
    } else {
      const li = el('li');
      li.className = 'log-entry';
      const when = value.accepted_unix_us ? new Date(value.accepted_unix_us / 1000) : new Date();
      const source = value.source || event;
      li.append(el('span', when.toISOString().slice(11, 23) + ' '), el('span', source, 'src ' + source),
        el('span', ` ${value.channel || ''} ${value.event || ''} `),
        el('span', typeof value.data === 'string' ? value.data : JSON.stringify(value), 'data'));
      li.dataset.event = value.event || '';
      li.dataset.channel = value.channel || '';
      addEntry(li);
    }
  }

  async function startLog() {
    stopLog();
    const mine = { abort: new AbortController() };
    log = mine;
    const appId = app;
    $('log-status').textContent = 'connecting';
    try {
      const prefix = $('log-prefix').value.trim();
      const query = prefix ? `?prefix=${enc(prefix)}` : '';
      const res = await fetch(`/console/api/apps/${enc(appId)}/stream${query}`, {
        headers: { Authorization: 'Bearer ' + token, Accept: 'text/event-stream' },
        cache: 'no-store',
        signal: mine.abort.signal,
      });
      if (res.status === 401) return signOut('The admin token was refused.');
      if (!res.ok) {
        let msg = res.statusText;
        try { msg = (await res.json()).error; } catch (e) { /* keep statusText */ }
        addEntry(el('li', `live log refused (${res.status}): ${msg}`, 'end'));
        // A bad filter or a gone app stays refused: no retry until the filter changes.
        if (res.status !== 429 && res.status < 500) {
          $('log-status').textContent = 'refused';
          return;
        }
      } else {
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let at;
          while ((at = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, at);
            buf = buf.slice(at + 2);
            let event = 'message';
            const data = [];
            for (const line of block.split('\n')) {
              if (line.startsWith('event: ')) event = line.slice(7);
              else if (line.startsWith('data: ')) data.push(line.slice(6));
            }
            if (data.length) onSse(event, data.join('\n'));
          }
          if (buf.length > LOG_BUFFER) break;
        }
      }
    } catch (e) {
      if (mine.abort.signal.aborted) return;
    }
    if (log !== mine) return;
    $('log-status').textContent = 'reconnecting';
    $('log-status').classList.remove('live');
    setTimeout(() => { if (log === mine && app === appId) startLog(); }, 3000);
  }

  // --- wiring ---------------------------------------------------------------------------------

  $('login-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    token = $('token').value.trim();
    $('token').value = '';
    sessionStorage.setItem(TOKEN_KEY, token);
    $('login-error').textContent = '';
    signIn();
  });
  $('sign-out').addEventListener('click', () => signOut(''));
  $('publish-form').addEventListener('submit', publish);
  $('log-clear').addEventListener('click', () => $('log').replaceChildren());
  $('log-filter').addEventListener('submit', (ev) => {
    ev.preventDefault();
    if (app) startLog();
  });
  if (token) signIn();
})();
