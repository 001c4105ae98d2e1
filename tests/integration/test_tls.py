#!/usr/bin/env python3
"""tests/integration/test_tls.py: TLS listeners and the RFC 2817 in-place upgrade, with real
clients.

Generates a throw-away certificate with `openssl req` (nothing is committed), starts switchyard
with --listen and --tls-listen on 127.0.0.1 port 0 and tests/integration/tls_app.lua, then:
  - curl and `openssl s_client` over https: ALPN choice (h2 first, http/1.1), TLS 1.2 and 1.3, TLS 1.1
    refused, req.scheme and req.sni, the modern cipher of TLS 1.2;
  - Python ssl: keep-alive, pipelining, 1 MiB answers, large bodies, close_notify at close;
  - Python websockets over wss://: echo, large messages, publish to another subscriber;
  - RFC 2817 with Python ssl wrapping the same socket after the 101: GET with TLS/1.2,
    OPTIONS * with TLS/1.0 (RFC 2817 3.2), TLS/1.3 pinning (a TLS 1.2-only client fails, a
    TLS 1.3 one succeeds), TLS/1.2 with a TLS 1.2-only client, keep-alive afterwards, POST
    bodies (Content-Length, chunked) answered over TLS, then a WebSocket on that connection;
  - CUPS' ipptool -E (an independent RFC 2817 client: OPTIONS * upgrade, then an IPP POST);
  - examples/require_tls.lua: 426 advertisement, then the client's TLS/1.3 upgrade;
  - negative cases: garbage and a stalled handshake on the TLS port (others served meanwhile,
    the stalled one closed at the handshake timeout), cleartext pipelined after the upgrade
    request (400, never 101), cleartext instead of a ClientHello after the 101, a TLS offer on
    a TLS listener (dropped: served by app.request), accepting TLS without a certificate
    (500), bad certificate or key at start-up (exit 1, key never printed);
  - --workers 2 with a TLS listener.

Run from the repo root with SWITCHYARD_BIN set, with /usr/bin/python3. Every wait is bounded and
the run has a watchdog. Prints "ok - NAME" / "not ok - NAME" and "N passed, N failed".
"""
import asyncio
import os
import re
import select
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import BIN, TIMEOUT, Server, missing_bin, start_watchdog  # noqa: E402

ROOT = os.getcwd()
APP = os.path.join(ROOT, "tests", "integration", "tls_app.lua")
HANDSHAKE_TIMEOUT = 3.0  # tls_app.lua: app.http.header_timeout
WATCHDOG = 200
TMP = tempfile.mkdtemp(prefix="sy-tls.")
CERT = os.path.join(TMP, "cert.pem")
KEY = os.path.join(TMP, "key.pem")


def make_cert(cert, key, cn="localhost"):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", f"/CN={cn}",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=TIMEOUT * 4)


def client_ctx(minv=None, maxv=None):
    ctx = ssl.create_default_context(cafile=CERT)
    if minv:
        ctx.minimum_version = minv
    if maxv:
        ctx.maximum_version = maxv
    return ctx


def recv_head(s):
    """Reads byte by byte up to the end of a response head (nothing past it is consumed)."""
    buf = b""
    deadline = time.monotonic() + TIMEOUT
    while b"\r\n\r\n" not in buf:
        if time.monotonic() > deadline:
            raise TimeoutError("no complete head")
        b = s.recv(1)
        if not b:
            raise EOFError(f"closed after {buf!r}")
        buf += b
    return buf.decode("latin-1")


def read_response(s):
    """(status, headers dict lower-case, body) of one response with Content-Length."""
    head = recv_head(s)
    lines = head.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for ln in lines[1:]:
        if ":" in ln:
            k, v = ln.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = b""
    while len(body) < n:
        chunk = s.recv(min(65536, n - len(body)))
        if not chunk:
            raise EOFError("closed inside a body")
        body += chunk
    return status, headers, body


def closed_by_peer(s, within=TIMEOUT):
    """True when the peer closes (EOF or reset) within `within` seconds; data is discarded."""
    s.settimeout(within)
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline:
            if not s.recv(4096):
                return True
    except (ConnectionResetError, ssl.SSLError, BrokenPipeError):
        return True
    except socket.timeout:
        return False
    return False


def req(path, method="GET", extra="", body=b""):
    h = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n{extra}"
    if body:
        h += f"Content-Length: {len(body)}\r\n"
    return (h + "\r\n").encode() + body


def upgrade_req(path, token, method="GET"):
    return req(path, method, f"Upgrade: {token}\r\nConnection: Upgrade\r\n")


def tls_conn(port, ctx=None, sni="localhost"):
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    return (ctx or client_ctx()).wrap_socket(raw, server_hostname=sni,
                                             suppress_ragged_eofs=False)


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: got {got!r}, want {want!r}")


def check(cond, what):
    if not cond:
        raise AssertionError(what)


def run(argv, input_=None, timeout=TIMEOUT * 3):
    return subprocess.run(argv, input=input_, capture_output=True, timeout=timeout)


# ---- --tls-listen -------------------------------------------------------------------------


def t_curl_https(srv):
    url = f"https://localhost:{srv.tls_port}"
    r = run(["curl", "-sS", "-v", "--cacert", CERT, f"{url}/hello?x=1", "-d", "abc"])
    eq(r.returncode, 0, f"curl exit ({r.stderr[-500:]!r})")
    eq(r.stdout, b"POST /hello?x=1 https localhost 3\n", "body")
    err = r.stderr.decode()
    check("ALPN: offers h2,http/1.1" in err, "curl offered h2 and http/1.1")
    check("ALPN: server accepted h2" in err, f"server chose h2: {err[-800:]}")
    check("< HTTP/2 200" in err, f"answered over HTTP/2: {err[-800:]}")
    check(re.search(r"SSL connection using TLSv1\.3", err), "TLS 1.3 by default")
    # Without SNI (an IP address): req.sni is nil.
    r = run(["curl", "-sS", "-k", "--http1.1", f"https://127.0.0.1:{srv.tls_port}/ip"])
    eq(r.stdout, b"GET /ip https - 0\n", "no SNI for an IP address")


def s_client(port, *args, data=b"GET /s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"):
    return run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                "localhost", "-CAfile", CERT, "-verify_return_error", "-ign_eof", *args],
               input_=data)


def t_s_client(srv):
    # Without -ign_eof: s_client quits at the end of its (empty) input.
    r = run(["openssl", "s_client", "-connect", f"127.0.0.1:{srv.tls_port}", "-servername",
             "localhost", "-CAfile", CERT, "-alpn", "h2,http/1.1"], input_=b"")
    out = r.stdout.decode("latin-1")
    check("ALPN protocol: h2" in out, f"ALPN h2 chosen over http/1.1: {out[-1500:]}")
    r = s_client(srv.tls_port, "-alpn", "spdy/3,http/1.1")
    out = r.stdout.decode("latin-1")
    eq(r.returncode, 0, f"s_client exit ({r.stderr[-500:]!r})")
    check("ALPN protocol: http/1.1" in out, f"ALPN http/1.1: {out[-1500:]}")
    check("Verify return code: 0 (ok)" in out, "certificate verified")
    check("GET /s https localhost 0" in out, "request answered")
    r = s_client(srv.tls_port, "-tls1_2", "-alpn", "http/1.1")
    out = r.stdout.decode("latin-1")
    eq(r.returncode, 0, "s_client -tls1_2")
    check(re.search(r"Protocol\s*: TLSv1\.2", out), "TLS 1.2 negotiated")
    m = re.search(r"Cipher\s*: (\S+)", out)
    check(m and m.group(1).startswith("ECDHE-") and ("GCM" in m.group(1) or "CHACHA" in
                                                      m.group(1)),
          f"forward-secret AEAD cipher for TLS 1.2: {m and m.group(1)}")
    r = s_client(srv.tls_port, "-tls1_3")
    eq(r.returncode, 0, "s_client -tls1_3")
    check("TLSv1.3" in r.stdout.decode("latin-1"), "TLS 1.3 negotiated")
    # TLS 1.1 is refused (openssl may need seclevel 0 to even offer it).
    r = s_client(srv.tls_port, "-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0")
    check(r.returncode != 0 and b"GET /s" not in r.stdout, "TLS 1.1 refused")
    # An ALPN list without anything we speak: no ALPN, still HTTP/1.1.
    r = s_client(srv.tls_port, "-alpn", "spdy/3")
    check("No ALPN negotiated" in r.stdout.decode("latin-1"), "unknown ALPN ignored")
    check(b"GET /s https" in r.stdout, "served as HTTP/1.1")


def t_python_keepalive_pipelining(srv):
    with tls_conn(srv.tls_port) as s:
        eq(s.selected_alpn_protocol(), None, "no ALPN asked, none chosen")
        s.sendall(req("/a") + req("/b", "POST", body=b"x" * 300000) + req("/c"))
        for want in (b"GET /a https localhost 0\n", b"POST /b https localhost 300000\n",
                     b"GET /c https localhost 0\n"):
            st, _, body = read_response(s)
            eq((st, body), (200, want), "pipelined response")
        s.sendall(req("/big"))
        st, _, body = read_response(s)
        eq((st, len(body)), (200, 1 << 20), "1 MiB answer")
        check(body == b"0123456789abcdef" * 65536, "1 MiB content")
        # Connection: close ends with close_notify: a clean TLS EOF, not a ragged one.
        s.sendall(req("/close"))
        st, h, body = read_response(s)
        eq((st, h.get("connection")), (200, "close"), "close response")
        s.settimeout(TIMEOUT)
        eq(s.recv(10), b"", "close_notify then EOF (suppress_ragged_eofs=False)")


def t_python_alpn(srv):
    ctx = client_ctx()
    ctx.set_alpn_protocols(["http/1.1"])
    with tls_conn(srv.tls_port, ctx) as s:
        eq(s.selected_alpn_protocol(), "http/1.1", "ALPN")
        s.sendall(req("/alpn"))
        eq(read_response(s)[2], b"GET /alpn https localhost 0\n", "served")


def t_python_alpn_h2(srv):
    # ALPN h2: HTTP/2 from the first byte after the handshake, served by the same app.
    import h2.config
    import h2.connection
    import h2.events
    ctx = client_ctx()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with tls_conn(srv.tls_port, ctx) as s:
        eq(s.selected_alpn_protocol(), "h2", "ALPN")
        conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        conn.initiate_connection()
        conn.send_headers(1, [(":method", "POST"), (":scheme", "https"),
                              (":authority", "localhost"), (":path", "/alpn2")])
        conn.send_data(1, b"abcd", end_stream=True)
        s.sendall(conn.data_to_send())
        status, body, done = None, b"", False
        deadline = time.monotonic() + TIMEOUT
        s.settimeout(TIMEOUT)
        while not done and time.monotonic() < deadline:
            data = s.recv(65536)
            if not data:
                break
            for ev in conn.receive_data(data):
                if isinstance(ev, h2.events.ResponseReceived):
                    status = dict(ev.headers).get(b":status")
                elif isinstance(ev, h2.events.DataReceived):
                    body += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded):
                    done = True
            s.sendall(conn.data_to_send())
        eq((status, body), (b"200", b"POST /alpn2 https localhost 4\n"), "HTTP/2 over TLS")


def t_resumption(srv):
    # A second connection resumes the first one's session (TLS 1.2 cache and TLS 1.3 tickets).
    for maxv in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_ctx(maxv=maxv)
        with tls_conn(srv.tls_port, ctx) as s:
            s.sendall(req("/first"))
            read_response(s)  # TLS 1.3 tickets arrive after the handshake, with the data
            session = s.session
            check(not s.session_reused, "first connection: full handshake")
        raw = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=TIMEOUT)
        with ctx.wrap_socket(raw, server_hostname="localhost", session=session) as s:
            s.sendall(req("/again"))
            eq(read_response(s)[2], b"GET /again https localhost 0\n", "served")
            check(s.session_reused, f"{maxv.name}: session resumed")


def t_wss(srv):
    import websockets.client

    async def go():
        url = f"wss://localhost:{srv.tls_port}/ws"
        ctx = client_ctx()
        async with websockets.client.connect(url, ssl=ctx, max_size=None) as a, \
                websockets.client.connect(url, ssl=ctx, max_size=None) as b:
            await a.send("hello")
            eq(await asyncio.wait_for(a.recv(), TIMEOUT), "hello", "text echo")
            big = os.urandom(1000 * 1000 + 17)  # under the 1 MiB default max_message_size
            await a.send(big)
            eq(await asyncio.wait_for(a.recv(), TIMEOUT * 3), big, "1 MB binary echo")
            await a.send("pub:news")
            eq(await asyncio.wait_for(b.recv(), TIMEOUT), "news", "publish to the other")
            await b.send("pub:back")
            eq(await asyncio.wait_for(a.recv(), TIMEOUT), "back", "publish back")

    asyncio.run(asyncio.wait_for(go(), TIMEOUT * 6))


# ---- RFC 2817 -----------------------------------------------------------------------------


def upgrade_then_tls(port, first, ctx=None):
    """Sends `first` in cleartext, reads the 101 head, wraps the same socket in TLS."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    raw.sendall(first)
    head = recv_head(raw)
    return head, (ctx or client_ctx()).wrap_socket(raw, server_hostname="localhost",
                                                   suppress_ragged_eofs=False)


def t_2817_get(srv):
    # A client that offers h2 by ALPN still gets HTTP/1.1: the upgraded request is HTTP/1.1.
    ctx = client_ctx()
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    head, s = upgrade_then_tls(srv.port, upgrade_req("/up?q=1", "TLS/1.2"), ctx)
    with s:
        eq(s.selected_alpn_protocol(), "http/1.1", "ALPN never h2 in place")
        lines = head.split("\r\n")
        eq(lines[0], "HTTP/1.1 101 Switching Protocols", "status line")
        check("Upgrade: TLS/1.2, HTTP/1.1" in lines, f"Upgrade field: {head!r}")
        check("Connection: Upgrade" in lines, "Connection field")
        eq(s.version(), "TLSv1.3", "TLS/1.2 is a minimum: 1.3 negotiated")
        st, _, body = read_response(s)
        eq((st, body), (200, b"GET /up?q=1 https localhost 0\n"),
           "the upgraded request answered over TLS")
        s.sendall(req("/again", "POST", body=b"12345"))
        eq(read_response(s)[2], b"POST /again https localhost 5\n", "keep-alive over TLS")
        s.sendall(upgrade_req("/nested", "TLS/1.2"))
        st, h, body = read_response(s)
        eq((st, body), (200, b"GET /nested https localhost 0\n"),
           "a TLS offer inside TLS is dropped: app.request answers")


def t_2817_post_body_and_websocket(srv):
    # The upgraded request's body is kept for its answer over TLS (Content-Length and chunked).
    first = (b"POST /form HTTP/1.1\r\nHost: localhost\r\nUpgrade: TLS/1.2\r\n"
             b"Connection: Upgrade\r\nContent-Length: 11\r\n\r\nhello world")
    head, s = upgrade_then_tls(srv.port, first)
    with s:
        check(head.startswith("HTTP/1.1 101 "), f"101: {head!r}")
        eq(read_response(s)[2], b"POST /form https localhost 11\n", "body answered over TLS")
    first = (b"POST /chunked HTTP/1.1\r\nHost: localhost\r\nUpgrade: TLS/1.2\r\n"
             b"Connection: Upgrade\r\nTransfer-Encoding: chunked\r\n\r\n"
             b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    head, s = upgrade_then_tls(srv.port, first)
    with s:
        eq(read_response(s)[2], b"POST /chunked https localhost 11\n", "chunked body over TLS")
        # Then a WebSocket upgrade on the same connection, now over TLS.
        s.sendall(req("/ws", extra="Upgrade: websocket\r\nConnection: Upgrade\r\n"
                      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                      "Sec-WebSocket-Version: 13\r\n"))
        head = recv_head(s)
        check(head.startswith("HTTP/1.1 101 ") and
              "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" in head, f"ws 101: {head!r}")
        mask = b"\x01\x02\x03\x04"
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"over tls"))
        s.sendall(b"\x81\x88" + mask + payload)
        frame = b""
        while len(frame) < 10:
            frame += s.recv(10 - len(frame))
        eq(frame, b"\x81\x08over tls", "WebSocket echo over the upgraded connection")


def t_2817_options(srv):
    head, s = upgrade_then_tls(srv.port, upgrade_req("*", "TLS/1.0", "OPTIONS"))
    with s:
        check("Upgrade: TLS/1.0, HTTP/1.1\r\n" in head, f"101 names TLS/1.0: {head!r}")
        check(s.version() in ("TLSv1.2", "TLSv1.3"), "never below TLS 1.2")
        st, h, body = read_response(s)
        eq((st, h.get("x-seen"), body), (200, "OPTIONS * https localhost 0", b""),
           "OPTIONS * answered over TLS")
        s.sendall(req("/next"))
        eq(read_response(s)[2], b"GET /next https localhost 0\n", "then a GET over TLS")


def t_2817_pin(srv):
    # TLS/1.2 with a client that stops at TLS 1.2.
    head, s = upgrade_then_tls(srv.port, upgrade_req("/p12", "TLS/1.2"),
                               client_ctx(maxv=ssl.TLSVersion.TLSv1_2))
    with s:
        eq(s.version(), "TLSv1.2", "TLS 1.2 client")
        eq(read_response(s)[2], b"GET /p12 https localhost 0\n", "answered")
    # TLS/1.3 pins 1.3: a TLS 1.2-only client fails its handshake...
    raw = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    raw.sendall(upgrade_req("/tls13", "TLS/1.3"))
    check("Upgrade: TLS/1.3, HTTP/1.1" in recv_head(raw), "101 for TLS/1.3")
    try:
        client_ctx(maxv=ssl.TLSVersion.TLSv1_2).wrap_socket(raw, server_hostname="localhost")
        raise AssertionError("a TLS 1.2 handshake passed a TLS/1.3 pin")
    except ssl.SSLError:
        pass
    finally:
        raw.close()
    # ...and a TLS 1.3 client succeeds.
    head, s = upgrade_then_tls(srv.port, upgrade_req("/tls13", "TLS/1.3"))
    with s:
        eq(s.version(), "TLSv1.3", "TLS 1.3")
        eq(read_response(s)[2], b"GET /tls13 https localhost 0\n", "answered")


def t_2817_pipelined_cleartext(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as s:
        s.sendall(upgrade_req("/p", "TLS/1.2") + req("/smuggled"))
        st, h, body = read_response(s)
        eq(st, 400, "bytes behind the upgrade request refuse it")
        check(b"smuggled" not in body, "never interpreted")
        check(closed_by_peer(s), "then closed")


def t_2817_cleartext_after_101(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as s:
        s.sendall(upgrade_req("/p", "TLS/1.2"))
        check(recv_head(s).startswith("HTTP/1.1 101 "), "101")
        s.sendall(req("/smuggled"))
        data = b""
        s.settimeout(TIMEOUT)
        try:
            while True:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
        except ConnectionResetError:
            pass
        check(b"HTTP/" not in data and b"smuggled" not in data, f"no HTTP answer: {data!r}")


def t_2817_426(srv):
    with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as s:
        s.sendall(upgrade_req("/need-tls", "foo/1"))
        st, h, body = read_response(s)
        eq((st, h.get("upgrade"), h.get("connection")), (426, "TLS/1.3", "Upgrade"), "426")
        eq(body, b"TLS/1.3 required here\n", "human-readable body")
        s.sendall(req("/still"))
        eq(read_response(s)[2], b"GET /still http - 0\n", "the connection stays open")


def t_tls_garbage(srv):
    with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=TIMEOUT) as s:
        s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        check(closed_by_peer(s), "HTTP on the TLS port: closed")
    with socket.create_connection(("127.0.0.1", srv.tls_port), timeout=TIMEOUT) as s:
        s.sendall(b"\x16\x03\x01\x00\x05hello" + os.urandom(200))
        check(closed_by_peer(s), "a broken ClientHello: closed")
    with tls_conn(srv.tls_port) as s:
        s.sendall(req("/after"))
        eq(read_response(s)[2], b"GET /after https localhost 0\n", "others still served")


def t_tls_stall(srv):
    # One client sends nothing, one stops in the middle of its ClientHello, one stops after
    # the 101 of an in-place upgrade.
    quiet = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=TIMEOUT)
    half = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=TIMEOUT)
    half.sendall(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 20)
    up = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    up.sendall(upgrade_req("/stall", "TLS/1.2"))
    check(recv_head(up).startswith("HTTP/1.1 101"), "101")
    t0 = time.monotonic()
    for i in range(5):
        with tls_conn(srv.tls_port) as s:
            s.sendall(req(f"/meanwhile{i}"))
            eq(read_response(s)[2], f"GET /meanwhile{i} https localhost 0\n".encode(), "served")
    check(time.monotonic() - t0 < HANDSHAKE_TIMEOUT, "others served before the timeout")
    for name, s in (("silent", quiet), ("half ClientHello", half), ("after 101", up)):
        check(closed_by_peer(s, HANDSHAKE_TIMEOUT + TIMEOUT), f"{name} closed at the timeout")
        s.close()
    check(time.monotonic() - t0 >= HANDSHAKE_TIMEOUT - 0.3, "not before the timeout")


def t_ipptool(srv):
    if not shutil.which("ipptool"):
        raise AssertionError("ipptool missing (Debian cups-ipp-utils)")
    test = os.path.join(TMP, "upgrade.test")
    with open(test, "w") as f:
        f.write('{\n NAME "Get-Printer-Attributes after an RFC 2817 upgrade"\n'
                ' OPERATION Get-Printer-Attributes\n GROUP operation-attributes-tag\n'
                ' ATTR charset attributes-charset utf-8\n'
                ' ATTR naturalLanguage attributes-natural-language en\n'
                ' ATTR uri printer-uri $uri\n STATUS successful-ok\n'
                ' EXPECT printer-name OF-TYPE name WITH-VALUE "switchyard"\n}\n')
    env = dict(os.environ, HOME=TMP)  # CUPS keeps its TLS trust store under $HOME
    r = subprocess.run(["ipptool", "-E", "-t", f"ipp://127.0.0.1:{srv.port}/ipp/print", test],
                       capture_output=True, timeout=TIMEOUT * 4, env=env)
    out = r.stdout.decode("latin-1")
    eq(r.returncode, 0, f"ipptool -E: {out[-1500:]} {r.stderr[-500:]!r}")
    check("PASS" in out, "ipptool reports PASS")
    check("ipp request over https" in srv.stderr(), "the IPP POST came over TLS")


def t_require_tls_example(_srv):
    srv = Server(os.path.join(ROOT, "examples", "require_tls.lua"),
                 args=["--cert", CERT, "--key", KEY])
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as s:
            s.sendall(req("/secret"))
            st, h, body = read_response(s)
            eq((st, h.get("upgrade"), h.get("connection")), (426, "TLS/1.3", "Upgrade"),
               "426 advertisement")
            check(body.startswith(b"this resource needs TLS/1.3"), "human-readable body")
            s.sendall(upgrade_req("/", "TLS/1.2"))
            eq(read_response(s)[0], 426, "TLS/1.2 is not enough")
        head, s = upgrade_then_tls(srv.port, upgrade_req("/", "TLS/1.3"))
        with s:
            check("Upgrade: TLS/1.3, HTTP/1.1" in head, "101")
            eq(read_response(s)[2], b"public\n", "answered over TLS")
            s.sendall(req("/secret"))
            eq(read_response(s)[:3:2], (200, b"secret\n"), "/secret over TLS")
    finally:
        eq(srv.stop(), 0, "exit")


def t_no_cert(_srv):
    srv = Server(APP)
    try:
        with socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT) as s:
            s.sendall(upgrade_req("/x", "TLS/1.2"))
            st, _, _ = read_response(s)
            eq(st, 500, "accepting TLS without a certificate is an app error")
        check("no certificate" in srv.stderr(), "logged")
    finally:
        srv.stop()


def t_startup_errors(_srv):
    badkey = os.path.join(TMP, "bad.key")
    with open(badkey, "w") as f:
        f.write("-----BEGIN PRIVATE KEY-----\nU0VDUkVUTUFSS0VSc2VjcmV0bWFya2Vy\n"
                "-----END PRIVATE KEY-----\n")
    other_cert, other_key = os.path.join(TMP, "o.pem"), os.path.join(TMP, "o.key")
    make_cert(other_cert, other_key)
    cases = [
        (["--tls-listen", "127.0.0.1:0", "--cert", "/nonexistent/c.pem", "--key", KEY],
         "cannot read the certificate /nonexistent/c.pem"),
        (["--tls-listen", "127.0.0.1:0", "--cert", CERT, "--key", "/nonexistent/k.pem"],
         "cannot read the private key /nonexistent/k.pem"),
        (["--tls-listen", "127.0.0.1:0", "--cert", CERT, "--key", badkey],
         "cannot load the private key from " + badkey),
        (["--tls-listen", "127.0.0.1:0", "--cert", KEY, "--key", KEY],
         "cannot load the certificate from " + KEY),
        (["--tls-listen", "127.0.0.1:0", "--cert", CERT, "--key", other_key],
         "does not match"),
        (["--tls-listen", "127.0.0.1:0"], "--tls-listen needs --cert"),
        (["--listen", "127.0.0.1:0", "--cert", CERT], "--cert and --key go together"),
    ]
    with open(KEY) as f:
        key_body = [ln for ln in f.read().splitlines() if ln and not ln.startswith("-----")]
    for args, want in cases:
        r = run([BIN, *args, APP])
        err = r.stderr.decode("latin-1")
        eq(r.returncode, 1, f"exit code for {args}")
        check(want in err, f"message for {args}: {err!r}")
        check("listening on" not in r.stdout.decode(), "never listening")
        check("U0VDUkVU" not in err and not any(k in err for k in key_body),
              f"no key material in {err!r}")


def t_workers(_srv):
    p = subprocess.Popen([BIN, "--workers", "2", "--tls-listen", "127.0.0.1:0", "--cert", CERT,
                          "--key", KEY, APP], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        r, _, _ = select.select([p.stdout], [], [], TIMEOUT)
        line = p.stdout.readline().decode() if r else ""
        check(line.startswith("listening on https://127.0.0.1:"), f"https line: {line!r}")
        port = int(line.strip().rsplit(":", 1)[1])
        for i in range(8):
            deadline = time.monotonic() + TIMEOUT
            while True:
                try:
                    with tls_conn(port) as s:
                        s.sendall(req(f"/w{i}"))
                        eq(read_response(s)[2], f"GET /w{i} https localhost 0\n".encode(),
                           "served by a worker")
                    break
                except (ConnectionRefusedError, ConnectionResetError, ssl.SSLError):
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
    finally:
        p.terminate()
        try:
            eq(p.wait(10), 0, "workers exit 0")
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            raise


TESTS = [
    ("https with curl: ALPN http/1.1, scheme, SNI", t_curl_https),
    ("openssl s_client: ALPN, TLS 1.2 / 1.3, TLS 1.1 refused", t_s_client),
    ("python3-h2 over TLS with ALPN h2: HTTP/2, scheme https", t_python_alpn_h2),
    ("python ssl: keep-alive, pipelining, 1 MiB, close_notify", t_python_keepalive_pipelining),
    ("python ssl: ALPN http/1.1", t_python_alpn),
    ("session resumption, TLS 1.2 and 1.3", t_resumption),
    ("wss:// with python websockets: echo, 1 MB, publish", t_wss),
    ("RFC 2817: GET with TLS/1.2, keep-alive over TLS", t_2817_get),
    ("RFC 2817: OPTIONS * with TLS/1.0", t_2817_options),
    ("RFC 2817: POST bodies, then a WebSocket over the upgraded connection",
     t_2817_post_body_and_websocket),
    ("RFC 2817: TLS/1.2 and TLS/1.3 pin the minimum version", t_2817_pin),
    ("RFC 2817: cleartext pipelined after the request -> 400, no 101", t_2817_pipelined_cleartext),
    ("RFC 2817: cleartext instead of a ClientHello -> closed", t_2817_cleartext_after_101),
    ("RFC 2817 4.2: 426 advertisement", t_2817_426),
    ("TLS port: garbage closes that connection only", t_tls_garbage),
    ("stalled handshakes: others served, stalled closed at the timeout", t_tls_stall),
    ("ipptool -E: RFC 2817 upgrade then IPP over TLS", t_ipptool),
    ("examples/require_tls.lua", t_require_tls_example),
    ("accepting TLS without a certificate: 500", t_no_cert),
    ("start-up: bad certificate or key -> exit 1, no key material", t_startup_errors),
    ("--workers 2 with --tls-listen", t_workers),
]


def main():
    if missing_bin():
        return 1
    make_cert(CERT, KEY)
    srv = Server(APP, args=["--tls-listen", "127.0.0.1:0", "--cert", CERT, "--key", KEY])
    start_watchdog(srv, WATCHDOG)
    passed = failed = 0
    only = os.environ.get("TLS_CASE")
    try:
        for name, fn in TESTS:
            if only and only not in name:
                continue
            t0 = time.monotonic()
            try:
                fn(srv)
                passed += 1
                print(f"ok - {name} ({time.monotonic() - t0:.2f} s)", flush=True)
            except Exception as e:
                failed += 1
                print(f"not ok - {name}: {type(e).__name__}: {e}", flush=True)
                if os.environ.get("TLS_TRACE"):
                    traceback.print_exc()
    finally:
        alive = srv.alive()
        code = srv.stop()
        signal.alarm(0)
        shutil.rmtree(TMP, ignore_errors=True)
    if not alive or code != 0:
        failed += 1
        print(f"not ok - server alive and exit 0 (exit {code}); stderr: {srv.stderr()[-2000:]}")
    else:
        passed += 1
        print("ok - server exits 0 on SIGTERM")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
