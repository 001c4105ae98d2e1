#!/usr/bin/env python3
"""The metrics page (--metrics HOST:PORT): parsed by prometheus_client's text parser (strict)
and checked against what the test did: HTTP requests by status class, upgrade decisions by
token and outcome (with the bounded token set), WebSocket messages, bytes and close codes,
an h2 request, a TLS handshake and a failed one, Lua errors and a time-budget hit, topics, the
app's own counters and gauges, the version; then the same page merged from --workers 2.
Every count is exact (or a lower bound where the scrapes themselves count); nothing is timed."""
import base64
import os
import re
import select
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import (BIN, TIMEOUT, missing_bin, read_shared, recv_exact, ws_frame,  # noqa: E402
                    ws_read_frame)

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "metrics_app.lua")


class Proc:
    """The binary with --metrics; waits for its "listening on" and "metrics on" lines."""

    def __init__(self, args):
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen([BIN] + args, stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL)
        self.port = self.tls_port = self.mport = None
        buf, deadline = b"", time.monotonic() + TIMEOUT * 4
        while time.monotonic() < deadline and self.mport is None:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.05)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                for line in buf.decode().split("\n"):
                    m = re.match(r"listening on (https?)://127\.0\.0\.1:(\d+)$", line)
                    if m and m.group(1) == "http" and not self.port:
                        self.port = int(m.group(2))
                    if m and m.group(1) == "https" and not self.tls_port:
                        self.tls_port = int(m.group(2))
                    m = re.match(r"metrics on http://127\.0\.0\.1:(\d+)/metrics$", line)
                    if m:
                        self.mport = int(m.group(1))
            if self.proc.poll() is not None:
                break
        if self.mport is None:
            self.stop()
            raise RuntimeError(f"no metrics line: stdout {buf!r} stderr {self.stderr()!r}")

    def stderr(self):
        return read_shared(self.log)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def conn(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT * 6)
    return s


def read_response(s):
    """One HTTP/1.1 response read to its Content-Length: (status, headers, body)."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError(f"closed before a head: {buf!r}")
        buf += chunk
    head, rest = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        rest += chunk
    return status, hdrs, rest[:n]


def request(port, path, method="GET", extra=""):
    s = conn(port)
    try:
        s.sendall(f"{method} {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n{extra}\r\n"
                  .encode())
        return read_response(s)
    finally:
        s.close()


def scrape(mport, path="/metrics", method="GET"):
    return request(mport, path, method)


def families(text):
    """name -> {(sample name, frozenset(labels)): value}; a family seen twice fails."""
    out = {}
    for fam in text_string_to_metric_families(text):
        assert fam.name not in out, f"family {fam.name} twice"
        out[fam.name] = {(s.name, frozenset(s.labels.items())): s.value for s in fam.samples}
    return out


def val(fams, family, sample=None, **labels):
    want = (sample or family, frozenset(labels.items()))
    return fams[family].get(want, 0.0)


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


# ---- a small WebSocket client (exact frames) ---------------------------------------------

def ws_open(port, path, version="13"):
    s = conn(port)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
              f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: {version}\r\n\r\n".encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(1)
        if not chunk:
            raise AssertionError("closed during the handshake")
        buf += chunk
    status = int(buf.split()[1])
    return s, status


def ws_send(s, opcode, payload):
    s.sendall(ws_frame(opcode, payload))


def ws_recv(s):
    op, _, payload = ws_read_frame(s)
    return op, payload


def ws_close(s, code):
    ws_send(s, 8, struct.pack("!H", code))
    op, data = ws_recv(s)
    eq(op, 8, "close frame answered")
    eq(struct.unpack("!H", data[:2])[0], code, "close code echoed")
    s.close()


def make_cert(d):
    cert, key = os.path.join(d, "c.pem"), os.path.join(d, "k.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key,
                    "-out", cert, "-days", "2", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


# ---- the single process -----------------------------------------------------------------------

def t_single(tmp):
    cert, key = make_cert(tmp)
    srv = Proc(["--listen", "127.0.0.1:0", "--tls-listen", "127.0.0.1:0", "--cert", cert,
                "--key", key, "--metrics", "127.0.0.1:0", APP])
    try:
        port = srv.port
        for _ in range(5):
            eq(request(port, "/")[0], 200, "GET /")
        eq(request(port, "/nf")[0], 404, "GET /nf")
        eq(request(port, "/nf2")[0], 404, "GET /nf2")
        eq(request(port, "/err")[0], 500, "a hook that raises")
        eq(request(port, "/spin")[0], 500, "a hook past max_time")
        st, _, body = request(port, "/checks")
        eq(body.decode(), ",".join(["ok"] * 8), "misuse of sy.counter / sy.gauge")
        eq(float(request(port, "/gauges")[2]), 4.0, "gauge value")

        # Upgrade decisions.
        up = "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n" \
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        eq(request(port, "/reject", extra=up)[0], 403, "sy.reject")
        eq(request(port, "/426", extra=up)[0], 426, "sy.upgrade_required")
        eq(request(port, "/ignore", extra=up)[0], 200, "ignored upgrade")
        eq(request(port, "/uerr", extra=up)[0], 500, "app.upgrade raised")
        s, status = ws_open(port, "/echo", version="8")
        eq(status, 426, "the core's 426 for a bad version")
        s.close()
        # A raw protocol: one round trip.
        r = conn(port)
        r.sendall(b"GET /raw HTTP/1.1\r\nHost: t\r\nUpgrade: foo\r\nConnection: Upgrade\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += r.recv(1)
        r.sendall(b"ping")
        eq(recv_exact(r, 4), b"ping", "raw echo")
        r.close()
        for i in range(40):  # 32 distinct tokens get their own label, the rest "other"
            eq(request(port, "/ignore", extra=f"Upgrade: tok{i}\r\nConnection: Upgrade\r\n")[0],
               200, "ignored token")

        # WebSockets: exact messages, bytes and close codes.
        w1, st1 = ws_open(port, "/echo")
        eq(st1, 101, "ws /echo")
        for op, payload in ((1, b"hello"), (1, b"x" * 10), (2, b"y" * 32)):
            ws_send(w1, op, payload)
            eq(ws_recv(w1), (op, payload), "echo")
        ws_close(w1, 4001)
        w2, _ = ws_open(port, "/echo")
        ws_send(w2, 1, b"bye")
        op, data = ws_recv(w2)
        eq((op, struct.unpack("!H", data[:2])[0]), (8, 1000), "server close 1000")
        ws_send(w2, 8, struct.pack("!H", 1000))
        w2.close()
        w3, _ = ws_open(port, "/chat")
        eq(request(port, "/pub")[2], b"1", "one subscriber reached")
        eq(ws_recv(w3), (1, b"news"), "published")

        # h2 with prior knowledge (curl), TLS: one good handshake, one failed.
        out = subprocess.run(["curl", "-s", "--http2-prior-knowledge",
                              f"http://127.0.0.1:{port}/"], capture_output=True, timeout=60)
        eq(out.stdout, b"hello\n", "h2 GET")
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        with ctx.wrap_socket(conn(srv.tls_port), server_hostname="localhost") as t:
            t.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            eq(read_response(t)[0], 200, "https GET")
        bad = conn(srv.tls_port)
        bad.sendall(b"this is not a TLS ClientHello\r\n\r\n")
        bad.settimeout(TIMEOUT * 6)
        while bad.recv(4096):
            pass
        bad.close()

        # Scrape 1, while /chat is open.
        st, hdrs, body = scrape(srv.mport)
        eq(st, 200, "scrape")
        eq(hdrs["content-type"].split(";")[:2], ["text/plain", " version=0.0.4"], "content type")
        f = families(body.decode())
        eq(val(f, "switchyard_topics"), 1, "topics")
        eq(val(f, "switchyard_topic_subscriptions"), 1, "subscriptions")
        eq(val(f, "switchyard_connections_open", protocol="websocket"), 1, "open websockets")
        ws_close(w3, 1000)

        eq(scrape(srv.mport, "/other")[0], 404, "another path")
        eq(scrape(srv.mport, "/metrics", "POST")[0], 405, "another method")
        st, hdrs, body = scrape(srv.mport)  # scrape 2 (404 and 405 above count too)
        text = body.decode()
        f = families(text)
        v = lambda *a, **k: val(f, *a, **k)  # noqa: E731
        eq(v("switchyard_build_info", version="0.1.0"), 1, "build_info")
        cls = lambda c, p="http1": v("switchyard_http_responses", "switchyard_http_responses_total",  # noqa: E731,E501
                                     protocol=p, **{"class": c})
        # 2xx: 5 "/", /checks, /gauges, /ignore, 40 tokens, /pub, https, scrape 1.
        eq(cls("2xx"), 5 + 1 + 1 + 1 + 40 + 1 + 1 + 1, "http1 2xx")
        # 4xx: two 404, 403, two 426, and the metrics page's 404 and 405.
        eq(cls("4xx"), 2 + 1 + 2 + 2, "http1 4xx")
        eq(cls("5xx"), 3, "http1 5xx")
        eq(cls("1xx") + cls("3xx"), 0, "http1 1xx/3xx (101 counts as an upgrade)")
        eq(cls("2xx", "h2"), 1, "h2 2xx")
        eq(v("switchyard_http2_streams", "switchyard_http2_streams_total"), 1, "h2 streams")
        up = lambda tok, o: v("switchyard_upgrades", "switchyard_upgrades_total",  # noqa: E731
                              token=tok, outcome=o)
        eq(up("websocket", "accept"), 3, "websocket accepted")
        eq(up("websocket", "reject"), 1, "websocket rejected")
        eq(up("websocket", "upgrade_required"), 2, "websocket 426 (app and core)")
        eq(up("websocket", "ignore"), 1, "websocket ignored")
        eq(up("websocket", "error"), 1, "websocket error")
        eq(up("foo", "accept"), 1, "raw token accepted")
        for i in range(31):  # foo and tok0..tok30 fill the 32 slots for tokens seen
            eq(up(f"tok{i}", "ignore"), 1, f"tok{i}")
        eq(up("tok31", "ignore"), 0, "tok31 is past the bound")
        eq(up("other", "ignore"), 9, "tokens past the bound")
        tokens = {dict(k[1])["token"] for k in f["switchyard_upgrades"]}
        eq(len(tokens), 3 + 32 + 1 - 2, "bounded token labels (h2c, tls unused)")
        ct = lambda p: v("switchyard_connections", "switchyard_connections_total", protocol=p)  # noqa: E731,E501
        eq((ct("websocket"), ct("raw"), ct("h2"), ct("tls")), (3, 1, 1, 2), "connections")
        assert ct("http1") >= 60, ct("http1")
        eq(v("switchyard_connections_open", protocol="websocket"), 0, "no websocket open")
        m = lambda d: (v("switchyard_websocket_messages", "switchyard_websocket_messages_total",  # noqa: E731,E501
                         direction=d),
                       v("switchyard_websocket_bytes", "switchyard_websocket_bytes_total",
                         direction=d))
        eq(m("in"), (4, 5 + 10 + 32 + 3), "messages and bytes in")
        eq(m("out"), (4, 5 + 10 + 32 + 4), "messages and bytes out (echoes, one publish)")
        cc = lambda code, d: v("switchyard_websocket_closes", "switchyard_websocket_closes_total",  # noqa: E731,E501
                               code=code, direction=d)
        eq((cc("4001", "in"), cc("4001", "out")), (1, 1), "close 4001")
        eq((cc("1000", "in"), cc("1000", "out")), (2, 2), "close 1000")
        eq(v("switchyard_tls_handshakes", "switchyard_tls_handshakes_total"), 1, "handshakes")
        eq(v("switchyard_tls_handshake_failures", "switchyard_tls_handshake_failures_total"), 1,
           "failed handshakes")
        eq(v("switchyard_lua_errors", "switchyard_lua_errors_total"), 3, "Lua errors")
        eq(v("switchyard_lua_budget_hits", "switchyard_lua_budget_hits_total", kind="time"), 1,
           "time budget")
        assert v("switchyard_lua_memory_bytes") > 10000, "Lua memory"
        eq(v("switchyard_topics"), 0, "no topic left")
        eq(v("switchyard_publishes", "switchyard_publishes_total"), 1, "publishes")
        assert v("switchyard_start_time_seconds") > 1.6e9, "start time"
        eq(v("app_hits", "app_hits_total", path="/"), 7, "app counter (5 + h2 + https)")
        eq(v("app_hits", "app_hits_total", path="/again"), 7, "declared twice: one metric")
        eq(v("app_rooms"), 4, "app gauge")
        eq(v("app_rooms", kind="x"), -2, "app gauge with a label")
        eq(v("app_level", a='q"uo\\te', b="7"), 2.5, "escaped label value")
        assert "# HELP app_hits_total Requests by path (declared twice)\n" in text
        code = srv.stop()
        eq(code, 0, "exit status")
    finally:
        srv.stop()


def t_unknown_before(tmp):
    """Without --metrics nothing listens for scrapes and no line is printed (plain startup)."""
    p = subprocess.run([BIN, "--check", APP], capture_output=True, timeout=60)
    eq(p.returncode, 0, "the app checks")


# ---- --workers 2 --------------------------------------------------------------------------------

def t_workers(tmp):
    srv = Proc(["--listen", "127.0.0.1:0", "--workers", "2", "--metrics", "127.0.0.1:0", APP])
    try:
        # Both workers load their app before their first scrape answer: wait for both pages.
        deadline = time.monotonic() + 60
        while True:
            st, _, body = scrape(srv.mport)
            f = families(body.decode()) if st == 200 else {}
            workers = {dict(k[1]).get("worker") for k in f.get("switchyard_build_info", {})}
            if workers == {"0", "1"} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        eq(workers, {"0", "1"}, "both workers on the page")
        for _ in range(20):
            eq(request(srv.port, "/")[0], 200, "GET /")
        st, hdrs, body = scrape(srv.mport)
        eq(st, 200, "scrape")
        f = families(body.decode())
        total = 0
        for (name, labels), value in f["switchyard_http_responses"].items():
            d = dict(labels)
            assert d["worker"] in ("0", "1"), d
            if d["class"] == "2xx" and d["protocol"] == "http1":
                total += value
        eq(total, 20, "2xx over both workers (scrapes are the supervisor's)")
        hits = sum(vv for (n, lb), vv in f["app_hits"].items() if dict(lb).get("path") == "/")
        eq(hits, 20, "app counter over both workers")
        eq(sorted(dict(lb)["worker"] for (n, lb) in f["switchyard_worker_relay_up"]), ["0", "1"],
           "relay links")
        eq(scrape(srv.mport, "/x")[0], 404, "another path")
        eq(scrape(srv.mport, "/metrics", "DELETE")[0], 405, "another method")
        eq(srv.stop(), 0, "exit status")
    finally:
        srv.stop()


# ---- --redis: the link's state -------------------------------------------------------------

def t_redis(tmp):
    from redisproc import Redis
    rd = Redis()
    srv = None
    try:
        srv = Proc(["--listen", "127.0.0.1:0", "--redis", f"redis://127.0.0.1:{rd.port}",
                    "--metrics", "127.0.0.1:0", APP])

        def redis_up():
            return val(families(scrape(srv.mport)[2].decode()), "switchyard_redis_up")
        deadline = time.monotonic() + 60
        while redis_up() != 1 and time.monotonic() < deadline:
            time.sleep(0.1)
        eq(redis_up(), 1, "redis_up with Redis running")
        rd.stop()
        deadline = time.monotonic() + 60
        while redis_up() != 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        eq(redis_up(), 0, "redis_up once Redis is gone")
    finally:
        if srv:
            srv.stop()
        rd.stop()


def main():
    if missing_bin():
        return 1
    passed = failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        for t in (t_unknown_before, t_single, t_workers, t_redis):
            try:
                t(tmp)
                print(f"ok - {t.__name__}")
                passed += 1
            except Exception:
                print(f"not ok - {t.__name__}")
                traceback.print_exc()
                failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
