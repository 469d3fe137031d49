#!/usr/bin/env python3
"""Writes the handwritten seed corpora of tests/fuzz/corpus/<target>/ (valid and edge-case
inputs). Run from anywhere; needs protoc for the NodeLink seeds. Inputs found by fuzzing that
once crashed are committed there too, named crash-*, and are not generated here."""
import os
import struct
import subprocess
import zlib

ROOT = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(ROOT))


def write(target, name, data):
    d = os.path.join(ROOT, "corpus", target)
    os.makedirs(d, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)


# --- channel names -------------------------------------------------------------------------
for i, name in enumerate([
        "my-channel", "private-chat", "presence-room", "private-encrypted-secret",
        "private-encrypted-cache-x", "private-cache-x", "presence-cache-x", "cache-x",
        "#server-to-user-42", "#server-to-user-", "#server-to-user-a b", "1234.5678", ".1", "1.",
        "", "a" * 164, "a" * 165, "bad name!", "caf\u00e9", "_-=@,.;", "private-", "presence-",
        "\x00private-x"]):
    write("fuzz_channel", f"seed-{i:02d}", name)

# --- signatures and query strings (FuzzedDataProvider: fields end at a backslash + any byte) --
def fields(*parts):
    return "".join(p.replace("\\", "\\\\") + "\\ " for p in parts[:-1]) + parts[-1]

write("fuzz_pusher_auth", "seed-00", fields(
    "app-key:5b0a", "app-key", "app-secret", "old-secret", "123.456", "private-chat", "POST",
    "/apps/app-id/events",
    "auth_key=app-key&auth_timestamp=1700000000&auth_version=1.0&body_md5=abc&auth_signature=x"))
write("fuzz_pusher_auth", "seed-01", fields(
    "k:", "k", "", "", "1.2", "presence-x", "GET", "/apps/1/channels",
    "filter_by_prefix=presence-&info=user_count,subscription_count"))
write("fuzz_pusher_auth", "seed-02", fields(
    "no-colon", "key:with:colons", "s", "t", "", "", "", "", "a=%41%42&b=%zz&%&c=+x+&&=&d"))
write("fuzz_pusher_auth", "seed-03", fields(
    "app-key:" + "0" * 64, "app-key", "app-secret", "app-secret", "9.9", "#server-to-user-1",
    "POST", "/apps/app-id/users/1/events", "A=1&a=1&AUTH_SIGNATURE=2&auth_signature=3&%25=%"))

# --- WebSocket streams ---------------------------------------------------------------------
def frame(first, payload, mask=True, length=None):
    n = len(payload) if length is None else length
    m = 0x80 if mask else 0
    if n < 126:
        head = bytes([first, m | n])
    elif n <= 0xFFFF:
        head = bytes([first, m | 126]) + struct.pack(">H", n)
    else:
        head = bytes([first, m | 127]) + struct.pack(">Q", n)
    if not mask:
        return head + payload
    key = b"\x12\x34\x56\x78"
    return head + key + bytes(b ^ key[i & 3] for i, b in enumerate(payload))


def deflate(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]  # RFC 7692: the final empty block's 00 00 ff ff is left out


FIN, TEXT, BIN, CONT, CLOSE, PING, PONG, RSV1 = 0x80, 1, 2, 0, 8, 9, 10, 0x40
hello = b'{"event":"pusher:ping","data":{}}'
UPGRADE = (b"GET /app/app-key?protocol=7 HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
           b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
           b"Sec-WebSocket-Version: 13\r\n")
ws = {
    "text": b"\x00" + frame(FIN | TEXT, hello) + frame(FIN | CLOSE, b"\x03\xe8bye"),
    "binary": b"\x00" + frame(FIN | BIN, b"\x00\xff\x80"),
    "ping-pong": b"\x00" + frame(FIN | PING, b"hi") + frame(FIN | PONG, b"") +
                 frame(FIN | TEXT, b"echo"),
    "fragmented": b"\x00" + frame(TEXT, b'{"event":') + frame(FIN | PING, b"") +
                  frame(CONT, b'"x",') + frame(FIN | CONT, b'"data":1}'),
    "len16": b"\x00" + frame(FIN | TEXT, b"a" * 300),
    "len64": b"\x00" + frame(FIN | TEXT, b"", length=70000) + b"b" * 10,
    "len64-huge": b"\x00" + frame(FIN | TEXT, b"", length=1 << 63),
    "unmasked": b"\x00" + frame(FIN | TEXT, b"x", mask=False),
    "rsv-bits": b"\x00" + frame(FIN | 0x20 | TEXT, b"x"),
    "bad-opcode": b"\x00" + frame(FIN | 3, b"x") + frame(FIN | 0xB, b""),
    "control-fragmented": b"\x00" + frame(PING, b"x"),
    "control-too-long": b"\x00" + frame(FIN | PING, b"p" * 126),
    "continuation-alone": b"\x00" + frame(FIN | CONT, b"x"),
    "text-in-text": b"\x00" + frame(TEXT, b"a") + frame(FIN | TEXT, b"b"),
    "bad-utf8": b"\x00" + frame(FIN | TEXT, b"\xc3\x28\xed\xa0\x80"),
    "close-1-byte": b"\x00" + frame(FIN | CLOSE, b"\x03"),
    "close-bad-code": b"\x00" + frame(FIN | CLOSE, b"\x03\xed"),
    "close-empty": b"\x00" + frame(FIN | CLOSE, b"") + frame(FIN | TEXT, b"after"),
    "listener-close": b"\x00" + frame(FIN | TEXT, b"closebecause") + frame(FIN | TEXT, b"x"),
    "listener-abort": b"\x00" + frame(FIN | TEXT, b"abort") + frame(FIN | TEXT, b"x"),
    "partial-header": b"\x00" + frame(FIN | TEXT, b"abc")[:3],
    "deflate": b"\x01" + frame(FIN | RSV1 | TEXT, deflate(hello)) +
               frame(RSV1 | TEXT, deflate(b"x" * 200)[:5]) +
               frame(FIN | CONT, deflate(b"x" * 200)[5:]),
    "deflate-bomb": b"\x01" + frame(FIN | RSV1 | TEXT, deflate(b"\x00" * 200000)),
    "deflate-corrupt": b"\x01" + frame(FIN | RSV1 | TEXT, b"\xff\xff\xff\xff"),
    "deflate-not-negotiated": b"\x00" + frame(FIN | RSV1 | TEXT, deflate(hello)),
    "upgrade": b"\x02" + UPGRADE + b"\r\n" + frame(FIN | TEXT, hello),
    "upgrade-deflate": b"\x03" + UPGRADE +
                       b"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=10; "
                       b"client_max_window_bits, x-webkit-deflate-frame\r\n\r\n" +
                       frame(FIN | RSV1 | TEXT, deflate(hello)),
    "upgrade-bad-version": b"\x02" + UPGRADE.replace(b"13", b"8") + b"\r\n",
    "upgrade-bad-key": b"\x02" + UPGRADE.replace(b"dGhlIHNhbXBsZSBub25jZQ==", b"short") +
                       b"\r\n",
    "upgrade-http10": b"\x02" + UPGRADE.replace(b"HTTP/1.1", b"HTTP/1.0") + b"\r\n",
    "upgrade-no-connection": b"\x02" + UPGRADE.replace(b"Connection: Upgrade\r\n", b"") + b"\r\n",
    "upgrade-body": b"\x02" + UPGRADE + b"Content-Length: 3\r\n\r\nabc" + frame(FIN | TEXT, b"x"),
}
for name, data in ws.items():
    write("fuzz_ws_conn", name, data)

# --- HTTP API ------------------------------------------------------------------------------
def req(method, target, body=b"", headers=b"", mode=b"\x01"):
    h = (method.encode() + b" " + target.encode() + b" HTTP/1.1\r\nHost: x\r\n" + headers)
    if body:
        h += b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
    return mode + h + b"\r\n" + body


http = {
    "events": req("POST", "/apps/app-id/events",
                  b'{"name":"my-event","channels":["a","b"],"data":"{\\"x\\":1}"}'),
    "events-object-data": req("POST", "/api/v1/apps/app-key/events",
                              b'{"name":"e","channel":"presence-x","data":{"a":[1,2]},'
                              b'"socket_id":"1.2","info":"user_count,subscription_count"}'),
    "events-bad": req("POST", "/apps/app-id/events", b'{"name":1,"channels":"x"}'),
    "events-not-json": req("POST", "/apps/app-id/events", b"{\"name\":"),
    "batch": req("POST", "/apps/app-id/batch_events",
                 b'{"batch":[{"name":"e","channel":"c","data":"d"},'
                 b'{"name":"e2","channel":"private-c","data":"d","info":"subscription_count"}]}'),
    "channels": req("GET", "/apps/app-id/channels?filter_by_prefix=presence-&info=user_count"),
    "channel": req("GET", "/apps/app-id/channels/presence-x?info=user_count,subscription_count"),
    "users": req("GET", "/apps/app-id/channels/presence-x/users"),
    "terminate": req("POST", "/apps/app-id/users/u1/terminate_connections", b"{}"),
    "user-events": req("POST", "/apps/app-id/users/u1/events",
                       b'{"name":"e","data":"hello"}'),
    "auth": req("POST", "/apps/app-id/auth", b'{"socket_id":"1.2","channel_name":"private-x"}'),
    "unknown-route": req("DELETE", "/apps/app-id/whatever/%2e%2e/%zz"),
    "unknown-app": req("GET", "/apps/nope/channels"),
    "hmac": req("POST", "/apps/app-id/events?auth_key=app-key&auth_timestamp=1700000000&"
                "auth_version=1.0&body_md5=0&auth_signature=00",
                b'{"name":"e","channel":"c","data":"d"}', mode=b"\x00"),
    "hmac-repeated": req("GET", "/apps/app-id/channels?auth_key=app-key&AUTH_KEY=x&"
                         "auth_signature=1", mode=b"\x00"),
    "hmac-bad-escape": req("GET", "/apps/app-id/channels?auth_key=%zz", mode=b"\x00"),
    "bearer": req("GET", "/apps/app-id/channels", headers=b"Authorization: Bearer abc\r\n",
                  mode=b"\x00"),
    "key-secret-wrong": req("GET", "/apps/app-id/channels",
                            headers=b"X-Relay-Key: app-key\r\nX-Relay-Secret: no\r\n",
                            mode=b"\x00"),
    "chunked": b"\x01POST /apps/app-id/events HTTP/1.1\r\nHost: x\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n5\r\n{\"nam\r\n1c\r\ne\":\"e\",\"channel\":"
               b"\"c\",\"data\":\"\"}\r\n0\r\n\r\n",
    "signed-events": req("POST", "/apps/app-id/events?x=1",
                         b'{"name":"e","channels":["c"],"data":"d","info":"subscription_count"}',
                         mode=b"\x02"),
    "signed-channels": req("GET", "/apps/app-id/channels?info=user_count&filter_by_prefix=p",
                           mode=b"\x02"),
    "pipelined": req("GET", "/apps/app-id/channels") + b"GET / HTTP/1.1\r\n\r\n",
}
for name, data in http.items():
    write("fuzz_http_api", name, data)

# --- NodeLink messages (protobuf delimited) --------------------------------------------------
def varint(n):
    out = b""
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def encode(text):
    r = subprocess.run(["protoc", "-I", os.path.join(REPO, "proto"),
                        "--encode=relay.v1.NodeMessage", "relay/v1/node_link.proto"],
                       input=text.encode(), capture_output=True, check=True)
    return varint(len(r.stdout)) + r.stdout


HELLO = 'seq: 1 hello { node_id: "n1" address: "127.0.0.1:6001" shards: 2 version: "0.1.0" }'
SNAP = ('seq: 2 snapshot { channels { app_id: "app-id" channel: "presence-x" subscriptions: 2 }'
        ' presence { app_id: "app-id" channel: "presence-x" user_id: "u1" '
        'user_info_json: "{\\"name\\":\\"a\\"}" socket_id: "1.1" }'
        ' users { app_id: "app-id" user_id: "u1" socket_id: "1.1" watchlist: "u2" }'
        ' app_connections { key: "app-id" value: 3 } }')
node = {
    "attach": [HELLO, SNAP],
    "attach-empty": [HELLO, "seq: 2 snapshot { }"],
    "delta": [HELLO, SNAP, 'seq: 3 delta { channels { app_id: "app-id" channel: "c" '
              'subscriptions: 1 } presence_left { app_id: "app-id" channel: "presence-x" '
              'user_id: "u1" socket_id: "1.1" } signed_in { app_id: "app-id" user_id: "u3" '
              'socket_id: "1.3" watchlist: "u1" } signed_out { app_id: "app-id" user_id: "u1" '
              'socket_id: "1.1" } app_connections { key: "app-id" value: 0 } }'],
    "subscribe": [HELLO, "seq: 2 snapshot { }", 'seq: 3 subscribe { request_id: 7 app_id: '
                  '"app-id" channel: "presence-y" socket_id: "1.4" member { user_id: "u4" '
                  'user_info_json: "{}" } }', 'seq: 4 subscribe { request_id: 8 app_id: '
                  '"app-id" channel: "cache-z" socket_id: "1.4" }', 'seq: 5 subscribe { '
                  'request_id: 9 app_id: "nope" channel: "presence-y" }'],
    "client-event": [HELLO, "seq: 2 snapshot { }", 'seq: 3 client_event { app_id: "app-id" '
                     'channel: "private-c" event: "client-x" data_json: "{}" socket_id: "1.1" '
                     'user_id: "" }', 'seq: 4 heartbeat { }', 'seq: 5 snapshot { }'],
    "unknown-app": [HELLO, 'seq: 2 snapshot { channels { app_id: "zzz" channel: "" '
                    'subscriptions: 4294967295 } app_connections { key: "" value: '
                    '18446744073709551615 } }'],
    "no-hello": ["seq: 1 snapshot { }"],
}
for name, msgs in node.items():
    write("fuzz_node_message", name, b"".join(encode(m) for m in msgs))

# --- Pusher client messages (one per line; "SIGN" gets the valid signature) ----------------
session = {
    "ping": ['{"event":"pusher:ping","data":{}}', '{"event":"pusher:pong","data":{}}'],
    "public": ['{"event":"pusher:subscribe","data":{"channel":"my-channel"}}',
               '{"event":"pusher:unsubscribe","data":{"channel":"my-channel"}}'],
    "private": ['{"event":"pusher:subscribe","data":{"channel":"private-c","auth":"SIGN"}}',
                '{"event":"client-typing","channel":"private-c","data":{"who":"me"}}',
                '{"event":"client-x","channel":"private-other","data":1}'],
    "presence": ['{"event":"pusher:subscribe","data":{"channel":"presence-room","auth":"SIGN",'
                 '"channel_data":"{\\"user_id\\":\\"u1\\",\\"user_info\\":{\\"name\\":\\"A\\"}}"}}',
                 '{"event":"client-hi","channel":"presence-room","data":"{}"}'],
    "presence-numeric-id": ['{"event":"pusher:subscribe","data":{"channel":"presence-x",'
                            '"auth":"SIGN","channel_data":"{\\"user_id\\":12345}"}}'],
    "presence-bad-data": ['{"event":"pusher:subscribe","data":{"channel":"presence-x",'
                          '"auth":"SIGN","channel_data":"{\\"user_id\\":[1]}"}}',
                          '{"event":"pusher:subscribe","data":{"channel":"presence-y",'
                          '"auth":"SIGN","channel_data":"not json"}}'],
    "bad-auth": ['{"event":"pusher:subscribe","data":{"channel":"private-c","auth":"app-key:00"}}'],
    "signin": ['{"event":"pusher:signin","data":{"auth":"SIGN","user_data":'
               '"{\\"id\\":\\"u1\\",\\"user_info\\":{},\\"watchlist\\":[\\"u2\\",\\"u3\\"]}"}}',
               '{"event":"pusher:subscribe","data":{"channel":"#server-to-user-u1"}}'],
    "signin-bad": ['{"event":"pusher:signin","data":{"auth":"SIGN","user_data":"{\\"id\\":1}"}}',
                   '{"event":"pusher:signin","data":{"auth":"x"}}'],
    "cache": ['{"event":"pusher:subscribe","data":{"channel":"cache-c"}}',
              '{"event":"pusher:subscribe","data":{"channel":"cache-c"}}'],
    "encrypted": ['{"event":"pusher:subscribe","data":{"channel":"private-encrypted-x",'
                  '"auth":"SIGN"}}', '{"event":"client-x","channel":"private-encrypted-x",'
                  '"data":{}}'],
    "malformed": ['{', '[]', '{"event":1}', '{"event":"pusher:subscribe","data":"{\\"channel'
                  '\\":\\"a\\"}"}', '{"event":"pusher:subscribe","data":{"channel":"bad name!"}}',
                  '{"event":"pusher:subscribe"}', '{"data":{}}', '"x"', '{"event":"pusher:foo"}'],
    "data-as-string": ['{"event":"pusher:subscribe","data":"{\\"channel\\":\\"private-s\\",'
                       '\\"auth\\":\\"x\\"}"}'],
}
for name, lines in session.items():
    write("fuzz_pusher_session", name, "\n".join(lines))
