// Raw HTTP API requests signed the Pusher way (spec section 10.3), with every part overridable so
// tests can send exactly the wrong signature, timestamp or body_md5 they mean to.
'use strict';
const crypto = require('node:crypto');
const { APP } = require('./harness');

const md5 = (s) => crypto.createHash('md5').update(s).digest('hex');
const hmac = (secret, s) => crypto.createHmac('sha256', secret).update(s).digest('hex');

// signed(port, method, path, { body, query, key, secret, timestamp, bodyMd5, signature, signPath,
//   tamper, headers }): `body` is sent as given when a string, else as its JSON text; `bodyMd5:
// null` leaves body_md5 out; `signPath` signs another path than the one requested; `tamper(q)`
// edits the query after signing. Resolves with the fetch Response.
function signed(port, method, path, opts = {}) {
  const body = opts.body === undefined ? '' : (typeof opts.body === 'string' ? opts.body : JSON.stringify(opts.body));
  const params = {
    auth_key: opts.key ?? APP.key,
    auth_timestamp: String(opts.timestamp ?? Math.floor(Date.now() / 1000)),
    auth_version: '1.0',
    ...(opts.query || {}),
  };
  if (opts.bodyMd5 !== null && (body !== '' || opts.bodyMd5 !== undefined)) params.body_md5 = opts.bodyMd5 ?? md5(body);
  const canonical = Object.keys(params).sort().map((k) => `${k.toLowerCase()}=${params[k]}`).join('&');
  const signature = opts.signature ?? hmac(opts.secret ?? APP.secret, `${method}\n${opts.signPath ?? path}\n${canonical}`);
  const sent = { ...params, auth_signature: signature };
  if (opts.tamper) opts.tamper(sent);
  const qs = new URLSearchParams(sent).toString();
  return fetch(`http://127.0.0.1:${port}${path}?${qs}`, {
    method, headers: { 'Content-Type': 'application/json', ...(opts.headers || {}) },
    body: method === 'GET' ? undefined : body,
  });
}

module.exports = { signed, md5, hmac };
