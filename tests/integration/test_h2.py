#!/usr/bin/env python3
"""tests/integration/test_h2.py: HTTP/2 against the real binary (prior knowledge and h2c).

Starts the server on 127.0.0.1 port 0 with tests/integration/h2_app.lua and drives it with
python3-h2 (the upgrade by hand, as a client library would) and with raw frames
(h2frames.py): the upgrade with a POST body served as stream 1, HTTP2-Settings applied, offers
that must not upgrade, request/response mapping, a 1 MiB body through a small window, many
concurrent and deferred streams, RST_STREAM from the client, limits, and GOAWAY on SIGTERM.
Run from the repo root with SWITCHYARD_BIN set (Debian's /usr/bin/python3 for python3-h2).
Prints "ok - NAME" / "not ok - NAME" per test and a final "N passed, N failed" line.
"""
import os
import socket
import struct
import sys
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, missing_bin, start_watchdog  # noqa: E402
import h2frames as F  # noqa: E402

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402

APP = os.path.join("tests", "integration", "h2_app.lua")


def kv(body):
    out = {}
    for line in body.decode().splitlines():
        k, _, v = line.partition("=")
        out[k] = v
    return out


def pattern(n):
    return b"".join(b"%07d|" % i * 8192 for i in range(n // 65536 + 1))[:n]


def http1_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise AssertionError(f"closed during the response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split(" ")[1]), headers, rest


def upgrade_bytes(path="/", method="GET", settings=None, extra=b"", body=b"", connection=None):
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1",
             "Connection: " + (connection or "Upgrade, HTTP2-Settings"), "Upgrade: h2c"]
    if settings is not None:
        for s in (settings if isinstance(settings, list) else [settings]):
            lines.append("HTTP2-Settings: " + s)
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n").encode() + extra + b"\r\n" + body


def h2c(port, path, method="GET", body=b"", timeout=TIMEOUT):
    """The upgrade done by hand with python3-h2; returns (status, headers, body, events)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection().decode()
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(upgrade_bytes(path, method, settings, body=body))
        status, hdrs, rest = http1_head(sock)
        assert status == 101, f"status {status}"
        assert hdrs.get("upgrade") == "h2c", hdrs
        assert hdrs.get("connection", "").lower() == "upgrade", hdrs
        # The server preface comes first: a SETTINGS frame, before anything else.
        while len(rest) < 9:
            rest += sock.recv(65536)
        assert rest[3] == F.SETTINGS and rest[4] == 0 and rest[5:9] == b"\0\0\0\0", rest[:9]
        sock.sendall(conn.data_to_send())
        got_status, got_headers, got_body, events = None, None, b"", []
        data = rest
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for ev in conn.receive_data(data):
                events.append(ev)
                if isinstance(ev, h2.events.ResponseReceived) and ev.stream_id == 1:
                    got_headers = dict((k.decode() if isinstance(k, bytes) else k,
                                        v.decode() if isinstance(v, bytes) else v)
                                       for k, v in ev.headers)
                    got_status = int(got_headers[":status"])
                elif isinstance(ev, h2.events.DataReceived) and ev.stream_id == 1:
                    got_body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, 1)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == 1:
                    return got_status, got_headers, got_body, events
                elif isinstance(ev, h2.events.StreamReset):
                    raise AssertionError(f"stream reset: {ev}")
            out = conn.data_to_send()
            if out:
                sock.sendall(out)
            data = sock.recv(65536)
            if not data:
                raise AssertionError(f"closed; events {events}")
        raise AssertionError(f"no end of stream 1; events {events}")
    finally:
        sock.close()


def pk(port, settings=()):
    c = F.Conn(port)
    c.start(*settings)
    return c


def get(c, stream, path, method="GET", extra=(), body=None):
    c.headers(stream, F.request_headers(path, method, extra), end_stream=body is None)
    if body is not None:
        c.send(F.frame(F.DATA, F.END_STREAM, stream, body))
    return c.response(stream)


# ---- tests -------------------------------------------------------------------------------------

def test_upgrade_get_with_python_h2(srv):
    status, hdrs, body, _ = h2c(srv.port, "/up?x=1")
    assert status == 200, status
    info = kv(body)
    assert info["version"] == "2" and info["method"] == "GET", info
    assert info["path"] == "/up" and info["query"] == "x=1", info
    # The HTTP/1.1 fields of the upgrade that are connection-specific do not reach stream 1.
    names = info["names"].split(",")
    for n in ("connection", "upgrade", "http2-settings"):
        assert n not in names, names
    assert info["host"] == "127.0.0.1", info


def test_upgrade_post_body_is_stream_1_body(srv):
    payload = b"hello upgrade body " * 100
    status, _, body, _ = h2c(srv.port, "/echo", "POST", payload)
    assert status == 200 and body == payload, (status, len(body))


def test_upgrade_then_more_streams_on_the_connection(srv):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection().decode()
    c = F.Conn(srv.port)
    c.send(upgrade_bytes("/first", settings=settings))
    head = c.read_until(b"\r\n\r\n")
    assert head and head.startswith(b"HTTP/1.1 101"), head
    c.start()
    h, body, _ = c.response(1)
    assert h and h[":status"] == "200" and kv(body)["path"] == "/first", (h, body)
    h, body, _ = get(c, 3, "/second")
    assert h[":status"] == "200" and kv(body)["path"] == "/second", (h, body)
    assert kv(body)["version"] == "2"
    c.close()


def test_http2_settings_are_applied(srv):
    # INITIAL_WINDOW_SIZE 1000 in HTTP2-Settings. Stream 1's body waits for the client preface
    # (a client such as Debian's curl keeps only so much behind the 101): before it, HEADERS
    # and no DATA; after the preface (an empty SETTINGS), exactly 1000 bytes of the 5000-byte
    # body, the window the upgrade set.
    c = F.Conn(srv.port)
    c.send(upgrade_bytes("/bytes?5000", settings=F.settings_b64((0x4, 1000))))
    head = c.read_until(b"\r\n\r\n")
    assert head and head.startswith(b"HTTP/1.1 101"), head
    seen, f = c.frames_until(lambda f: f.type == F.HEADERS and f.stream == 1)
    assert f and not f.flags & F.END_STREAM, seen
    c.decode(f)
    # Nothing more comes before the preface: a PING is only read after it, so wait a moment.
    early = c.frame(0.3)
    assert early is None and not c.closed, early
    c.start()
    got = 0
    seen = c.ping()  # every DATA the window allows was sent before the PING ACK
    for f in seen:
        if f.type == F.SETTINGS and not f.flags & F.ACK:
            c.send(F.settings(ack=True))
        if f.type == F.DATA and f.stream == 1:
            got += len(f.payload)
    assert got == 1000, (got, seen)
    # More window: the rest arrives.
    c.send(F.window_update(1, 10000))
    h, body, _ = c.response(1)
    assert got + len(body) == 5000, (got, len(body))
    c.close()


def test_upgrade_then_an_invalid_client_preface_closes(srv):
    good = F.settings_b64((0x3, 100))
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    s.sendall(upgrade_bytes("/x", settings=good))
    status, _, rest = http1_head(s)
    assert status == 101, status
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")   # HTTP/1.1 again, not the preface
    data = rest
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    else:
        raise AssertionError("still open")
    s.close()
    assert b"HTTP/1.1" not in data, data   # no HTTP/1.1 answer after the switch


def test_upgrade_head_request(srv):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    settings = conn.initiate_upgrade_connection().decode()
    c = F.Conn(srv.port)
    c.send(upgrade_bytes("/bytes?100", "HEAD", settings=settings))
    head = c.read_until(b"\r\n\r\n")
    assert head and head.startswith(b"HTTP/1.1 101"), head
    c.start()
    seen, f = c.frames_until(lambda f: f.stream == 1 and f.flags & F.END_STREAM)
    assert f and f.type == F.HEADERS, seen   # headers only: stream 1 was a HEAD
    assert dict(c.decode(f))["content-length"] == "100"
    c.close()


def test_offers_that_do_not_upgrade(srv):
    good = F.settings_b64((0x3, 100))
    cases = {
        "no HTTP2-Settings": upgrade_bytes("/n", settings=None),
        "two HTTP2-Settings": upgrade_bytes("/n", settings=[good, good]),
        "invalid base64url": upgrade_bytes("/n", settings="AAMAAABk=="),
        "not base64url at all": upgrade_bytes("/n", settings="AA+AAABk"),
        "settings of 5 bytes": upgrade_bytes("/n", settings=F.settings_b64()[:0] + "AAMAAAA"),
        "bad ENABLE_PUSH": upgrade_bytes("/n", settings=F.settings_b64((0x2, 7))),
        "Upgrade: h2": upgrade_bytes("/n", settings=good).replace(b"Upgrade: h2c", b"Upgrade: h2"),
    }
    for name, raw in cases.items():
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        s.sendall(raw)
        status, hdrs, rest = http1_head(s)
        assert status == 200, (name, status)
        n = int(hdrs["content-length"])
        while len(rest) < n:
            rest += s.recv(65536)
        assert kv(rest[:n])["version"] == "1.1", (name, rest)
        s.close()


def test_prior_knowledge_request_mapping(srv):
    c = pk(srv.port)
    h, body, _ = get(c, 1, "/p?q=2", extra=[("x-a", "A"), ("cookie", "a=1"), ("cookie", "b=2")])
    assert h[":status"] == "200", h
    info = kv(body)
    assert info["version"] == "2" and info["scheme"] == "http", info
    assert info["path"] == "/p" and info["query"] == "q=2" and info["target"] == "/p?q=2", info
    assert info["host"] == "127.0.0.1", info   # from :authority
    assert info["x-a"] == "A", info
    assert info["cookie"] == "a=1; b=2", info  # RFC 9113 8.2.3
    assert "date" in h and h["content-length"] == str(len(body)), h
    c.close()


def test_response_headers(srv):
    c = pk(srv.port)
    c.headers(1, F.request_headers("/headers"))
    seen, f = c.frames_until(lambda f: f.type == F.HEADERS and f.stream == 1)
    assert f, seen
    hs = c.decode(f)
    names = [k for k, _ in hs]
    assert ("x-one", "1") in hs and hs.count(("set-cookie", "a=1")) == 1, hs
    assert ("set-cookie", "b=2") in hs, hs
    for n in ("connection", "keep-alive", "upgrade", "transfer-encoding"):
        assert n not in names, hs
    assert dict(hs)[":status"] == "201", hs
    # The app's "connection: close" does not close an HTTP/2 connection.
    h, body, _ = get(c, 3, "/again")
    assert h[":status"] == "200", h
    c.close()


def test_head_and_204(srv):
    c = pk(srv.port)
    c.headers(1, F.request_headers("/bytes?100", "HEAD"))
    seen, f = c.frames_until(lambda f: f.stream == 1 and f.flags & F.END_STREAM)
    assert f and f.type == F.HEADERS, seen
    assert dict(c.decode(f))["content-length"] == "100"
    h, body, _ = get(c, 3, "/nocontent")
    assert h[":status"] == "204" and "content-length" not in h and body == b"", (h, body)
    c.close()


def test_a_body_through_a_small_window(srv):
    # 1 MiB through a 16 KiB window: 64 round trips of WINDOW_UPDATE, a few seconds at most
    # under sanitizers on a busy machine.
    n = 1024 * 1024
    c = pk(srv.port, settings=[(0x4, 16384)])
    c.headers(1, F.request_headers(f"/bytes?{n}"))
    h, body, seen = c.response(1, timeout=60)
    assert h and h[":status"] == "200", (h, seen[:5])
    assert len(body) == n, len(body)
    assert body == pattern(n), "body differs"
    assert max(len(f.payload) for f in seen if f.type == F.DATA) <= 16384
    c.close()


def test_many_concurrent_streams(srv):
    c = pk(srv.port)
    ids = list(range(1, 200, 2))  # 100 streams: the announced SETTINGS_MAX_CONCURRENT_STREAMS
    for i in ids:
        c.headers(i, F.request_headers(f"/later?{(i * 7) % 50}"))
    bodies, ended = {}, set()
    deadline = time.monotonic() + 20
    while len(ended) < len(ids) and time.monotonic() < deadline:
        f = c.frame(1)
        if f is None:
            break
        if f.type == F.HEADERS:
            c.decode(f)
        if f.type == F.DATA:
            bodies[f.stream] = bodies.get(f.stream, b"") + f.payload
            c.send(F.window_update(0, len(f.payload)))
        if f.type == F.RST_STREAM:
            raise AssertionError(f"reset {f}")
        if f.flags & F.END_STREAM and f.type in (F.DATA, F.HEADERS):
            ended.add(f.stream)
    assert ended == set(ids), (len(ended), sorted(set(ids) - ended)[:5])
    for i in ids:
        assert bodies[i] == f"later {(i * 7) % 50}\n".encode(), (i, bodies[i])
    c.close()


def test_deferred_responses_leave_in_any_order(srv):
    c = pk(srv.port)
    c.headers(1, F.request_headers("/later?400"))
    c.headers(3, F.request_headers("/later?10"))
    order = []
    deadline = time.monotonic() + 5
    while len(order) < 2 and time.monotonic() < deadline:
        f = c.frame(1)
        if f is None:
            break
        if f.type == F.HEADERS:
            c.decode(f)
        if f.type == F.DATA and f.flags & F.END_STREAM:
            order.append(f.stream)
    assert order == [3, 1], order
    c.close()


def test_rst_stream_kills_the_pending_response(srv):
    c = pk(srv.port)
    c.headers(1, F.request_headers("/hold/r1"))
    c.ping()  # the request reached the app before the reset
    c.send(F.rst(1, F.CANCEL))
    h, body, _ = get(c, 3, "/probe/r1")
    assert h[":status"] == "200" and body == b"nil closed\n", (h, body)
    # A held response that is still open is answered from another stream.
    c.headers(5, F.request_headers("/hold/r2"))
    c.ping()
    c.headers(7, F.request_headers("/probe/r2"))
    got = {}
    deadline = time.monotonic() + 5
    while len(got) < 2 and time.monotonic() < deadline:
        f = c.frame(1)
        if f is None:
            break
        if f.type == F.HEADERS:
            c.decode(f)
        if f.type == F.DATA:
            got[f.stream] = f.payload
    assert got == {5: b"released\n", 7: b"true nil\n"}, got
    c.close()


def abort(c):
    """Closes with a reset (SO_LINGER 0): the server sees the connection fail at once."""
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()


def test_connection_close_kills_pending_responses(srv):
    c = pk(srv.port)
    c.headers(1, F.request_headers("/hold/r3"))
    c.ping()  # the request reached the app
    abort(c)
    # The server sees the reset on its own time: probe until it has (bounded); a probe that
    # came first answers the held response ("true nil"), so hold it again and retry.
    deadline = time.monotonic() + 30
    while True:
        c = pk(srv.port)
        h, body, _ = get(c, 1, "/probe/r3")
        c.close()
        if body != b"true nil\n" or time.monotonic() > deadline:
            break
        c = pk(srv.port)
        c.headers(1, F.request_headers("/hold/r3"))
        c.ping()
        abort(c)
        time.sleep(0.1)
    assert body == b"nil closed\n", body


def test_body_limit(srv):
    c = pk(srv.port)
    # Declared too large: 413 at once, and the rest of the request is stopped (NO_ERROR).
    c.headers(1, F.request_headers("/echo", "POST", [("content-length", "100000")]),
              end_stream=False)
    h, body, seen = c.response(1)
    assert h and h[":status"] == "413", (h, seen)
    # Undeclared, grows past max_body (64 KiB) in DATA frames.
    c.headers(3, F.request_headers("/echo", "POST"), end_stream=False)
    chunk = b"x" * 16000
    for _ in range(5):
        c.send(F.frame(F.DATA, 0, 3, chunk))
    h, body, seen = c.response(3)
    assert h and h[":status"] == "413", (h, seen)
    # Within the limit: echoed.
    c.headers(5, F.request_headers("/echo", "POST"), end_stream=False)
    c.send(F.frame(F.DATA, 0, 5, b"y" * 15000) + F.frame(F.DATA, F.END_STREAM, 5, b"y" * 15000))
    h, body, _ = c.response(5)
    assert h[":status"] == "200" and body == b"y" * 30000, (h, len(body))
    c.close()


def test_bodies_held_per_connection_are_bounded(srv):
    # max_body is 64 KiB: a connection holds at most 4 x 64 KiB of bodies still arriving; the
    # stream whose DATA would pass that is refused (REFUSED_STREAM), the others go on.
    c = pk(srv.port)
    conn_window = 65535
    resets = []

    def pump(need):
        nonlocal conn_window
        deadline = time.monotonic() + TIMEOUT
        while conn_window < need and time.monotonic() < deadline:
            f = c.frame(1)
            if f is None:
                break
            if f.type == F.WINDOW_UPDATE and f.stream == 0:
                conn_window += struct.unpack(">I", f.payload)[0] & 0x7FFFFFFF
            elif f.type == F.RST_STREAM:
                resets.append((f.stream, f.error_code()))
            elif f.type == F.SETTINGS and not f.flags & F.ACK:
                c.send(F.settings(ack=True))
        assert conn_window >= need, "the server never opened its window"

    def send_body(stream, n):
        nonlocal conn_window
        for _ in range(n // 15000):
            pump(15000)
            c.send(F.frame(F.DATA, 0, stream, b"z" * 15000))
            conn_window -= 15000

    for s in (1, 3, 5, 7, 9):
        c.headers(s, F.request_headers("/echo", "POST"), end_stream=False)
        send_body(s, 60000)
    seen, f = c.frames_until(lambda f: f.type == F.RST_STREAM and f.stream == 9)
    resets += [(g.stream, g.error_code()) for g in seen if g.type == F.RST_STREAM]
    assert resets == [(9, F.REFUSED_STREAM)], (resets, seen)
    bodies = {}
    for s in (1, 3, 5, 7):
        c.send(F.frame(F.DATA, F.END_STREAM, s, b""))
    deadline = time.monotonic() + TIMEOUT
    while len([s for s in bodies if bodies[s][1]]) < 4 and time.monotonic() < deadline:
        f = c.frame(1)
        if f is None:
            break
        if f.type == F.HEADERS:
            c.decode(f)
        if f.type == F.DATA:
            got, _ = bodies.get(f.stream, (b"", False))
            bodies[f.stream] = (got + f.payload, bool(f.flags & F.END_STREAM))
            c.send(F.window_update(0, len(f.payload)) + F.window_update(f.stream, len(f.payload)))
        if f.type == F.WINDOW_UPDATE and f.stream == 0:
            conn_window += struct.unpack(">I", f.payload)[0] & 0x7FFFFFFF
    assert sorted(bodies) == [1, 3, 5, 7], sorted(bodies)
    assert all(b == b"z" * 60000 and end for b, end in bodies.values())
    # The bodies were served and released: a new one fits again.
    c.headers(11, F.request_headers("/echo", "POST"), end_stream=False)
    send_body(11, 60000)
    c.send(F.frame(F.DATA, F.END_STREAM, 11, b""))
    h, body, _ = c.response(11)
    assert h[":status"] == "200" and body == b"z" * 60000, (h, len(body))
    c.close()


def test_header_limit(srv):
    # A header block over the limits is answered 431, then the connection ends with GOAWAY
    # ENHANCE_YOUR_CALM: decoding stopped there, so nothing after it can be read.
    cases = {"over max_headers (100)": [(f"x-h{i}", "v") for i in range(150)],
             "over max_head (16 KiB)": [("x-big", "v" * 20000)]}
    for name, extra in cases.items():
        c = pk(srv.port)
        c.headers(1, F.request_headers("/", extra=extra))
        seen, _ = c.frames_until(lambda f: False, timeout=15)  # everything, up to the close
        assert c.closed, (name, seen)
        hs = [dict(c.decode(f)) for f in seen if f.type == F.HEADERS and f.stream == 1]
        assert hs and hs[0][":status"] == "431", (name, seen)
        g = [f for f in seen if f.type == F.GOAWAY]
        assert g and g[0].error_code() == 11 and g[0].last_stream() == 1, (name, seen)
        c.close()
    # Other connections go on.
    c = pk(srv.port)
    h, body, _ = get(c, 1, "/")
    assert h[":status"] == "200", h
    c.close()


def test_hook_error_is_500_and_the_connection_goes_on(srv):
    c = pk(srv.port)
    h, body, _ = get(c, 1, "/error")
    assert h[":status"] == "500", h
    h, body, _ = get(c, 3, "/")
    assert h[":status"] == "200", h
    c.close()


def test_invalid_preface_closes(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    assert data == b"", data
    s.close()


def test_sigterm_sends_goaway_and_finishes_open_streams(srv_unused):
    srv = Server(APP)
    try:
        c = pk(srv.port)
        c.headers(1, F.request_headers("/later?700"))
        c.ping()  # stream 1 was taken before the signal
        srv.proc.terminate()
        seen, g = c.frames_until(lambda f: f.type == F.GOAWAY, timeout=15)
        assert g and g.error_code() == F.NO_ERROR and g.last_stream() == 1, seen
        h, body, _ = c.response(1, timeout=15)
        assert h and h[":status"] == "200" and body == b"later 700\n", (h, body)
        # After the last stream the server closes and exits 0.
        assert c.read_raw(1, timeout=15) is None and c.closed
        srv.proc.wait(TIMEOUT)
        assert srv.proc.returncode == 0, srv.proc.returncode
        c.close()
    finally:
        srv.stop()


def test_idle_connection_gets_goaway(srv_unused):
    app = os.path.join("tests", "integration", "h2_idle_app.lua")
    srv = Server(app)
    try:
        c = pk(srv.port)
        h, body, _ = get(c, 1, "/")
        assert h[":status"] == "200"
        g = c.goaway_or_close(timeout=15)
        assert g != "closed" and g is not None and g.error_code() == F.NO_ERROR, g
        assert c.read_raw(1, timeout=15) is None and c.closed
        c.close()
    finally:
        srv.stop()


def main():
    if missing_bin():
        return 1
    srv = Server(APP)
    start_watchdog(srv, 240)
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn(srv)
            passed += 1
            print(f"ok - {name}")
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"not ok - {name}")
            for line in traceback.format_exc().splitlines():
                print("#   " + line)
        if not srv.alive():
            failed += 1
            print("not ok - server died; stderr:\n" + srv.stderr())
            break
    code = srv.stop()
    if code != 0:
        failed += 1
        print(f"not ok - server exit code {code}; stderr:\n{srv.stderr()}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
