#!/usr/bin/env python3
"""tests/integration/test_http1_bounds.py: HTTP/1.1 and connection bounds under attack.

Starts switchyard with tests/integration/http1_bounds_app.lua (send_timeout 2 s) and checks,
from the server's /proc/PID/status (VmRSS) and /proc/PID/fd, that:
  - a client that pipelines requests for a 1 MiB body and never reads holds about one
    high-water mark of output, not one body per request, and is closed by the send timeout
    (cleartext and TLS);
  - after a spike of such clients the server gives the memory back (RSS falls);
  - a WebSocket, a raw connection and an HTTP/2 connection whose peer never reads are closed by
    the send timeout;
  - clients that send a request and leave (FIN, or a half-close) before the app answers are
    released at once, and the app's kept res answers nil, "closed";
  - valid chunked bodies with heavy framing (16-byte and 1-byte chunks) are read whole, and
    framing far out of proportion to its data is refused with 400;
  - an absolute-form target's authority is req.headers.host (RFC 9112 3.2.2);
  - res:send with a status outside 100..599, or a 1xx, raises.

Run from the repo root with SWITCHYARD_BIN set. Every wait is bounded (far above what a working
server needs) and the whole run has a watchdog; nothing asserts on speed.
"""
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, missing_bin, start_watchdog  # noqa: E402

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.settings  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "http1_bounds_app.lua")
WATCHDOG = 280      # seconds: the whole run (ctest allows 300)
CLOSE_CAP = 40.0    # seconds a connection may take to be released (send timeout is 2 s)
MIB = 1024 * 1024
PIPELINED = 200     # requests for /big sent by one client that never reads
SPIKE_CONNS = 40    # such clients at once, for the memory spike
LEAVERS = 200       # clients that leave before their answer


# ---- /proc ------------------------------------------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise KeyError("VmRSS")


def sanitized(srv):
    """True when the server runs under AddressSanitizer (malloc is its allocator then)."""
    with open(f"/proc/{srv.proc.pid}/maps") as f:
        return "libasan" in f.read()


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def wait_fds(srv, want, cap=CLOSE_CAP, sample=None):
    """Polls until the server holds at most `want` descriptors; returns the peak RSS (KiB)
    seen meanwhile. Raises when the cap passes first."""
    pid = srv.proc.pid
    peak = rss_kib(pid)
    deadline = time.monotonic() + cap
    while True:
        peak = max(peak, rss_kib(pid))
        if sample:
            sample()
        n = fds(pid)
        if n <= want:
            return peak
        if time.monotonic() > deadline:
            raise AssertionError(f"{n} descriptors still open after {cap} s (want {want}); "
                                 f"peak RSS {peak // 1024} MiB")
        time.sleep(0.05)


def wait_rss_below(srv, kib, cap=CLOSE_CAP):
    pid = srv.proc.pid
    deadline = time.monotonic() + cap
    while True:
        now = rss_kib(pid)
        if now <= kib:
            return now
        if time.monotonic() > deadline:
            raise AssertionError(f"RSS {now // 1024} MiB still above {kib // 1024} MiB "
                                 f"after {cap} s")
        time.sleep(0.1)


# ---- HTTP helpers -----------------------------------------------------------------------------

def read_response(s):
    """(status, headers dict, body) of one response with Content-Length; None on EOF first."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(65536)
        if not chunk:
            return None
        buf += chunk
    head, body = buf.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for ln in lines[1:]:
        k, v = ln.split(":", 1)
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    while len(body) < n:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return status, hdrs, body[:n]


def request(port, raw):
    s = socket.create_connection(("127.0.0.1", port), timeout=CLOSE_CAP)
    try:
        s.sendall(raw)
        r = read_response(s)
        if r is None:
            raise AssertionError(f"no answer to {raw[:60]!r}")
        return r
    finally:
        s.close()


def get(port, target, host="x"):
    return request(port, f"GET {target} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())


def quiet_fds(srv):
    """The server's descriptor count with no client connected (after a round trip)."""
    st, _, _ = get(srv.port, "/")
    assert st == 200
    time.sleep(0.2)
    return fds(srv.proc.pid)


# ---- cases ------------------------------------------------------------------------------------

def first_bytes(sock):
    """Reads the first bytes of the server's answer (so it surely holds the connection), and
    nothing more."""
    if not sock.recv(1):
        raise AssertionError("closed before any answer")


def pipeline(sock):
    sock.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n" * PIPELINED)
    first_bytes(sock)


def t_pipelining_never_reads(srv):
    base_fd = quiet_fds(srv)
    base = rss_kib(srv.proc.pid)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=CLOSE_CAP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    pipeline(s)  # ~6 KB: the server takes it at once
    peak = wait_fds(srv, base_fd)  # closed by the send timeout
    s.close()
    grew = (peak - base) // 1024
    assert grew < 48, f"RSS grew {grew} MiB for one client (bound 48 MiB)"
    return f"RSS {base // 1024} -> peak {peak // 1024} MiB; fds back to {base_fd}"


def t_spike_given_back(srv):
    base_fd = quiet_fds(srv)
    base = rss_kib(srv.proc.pid)
    socks = []
    for _ in range(SPIKE_CONNS):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=CLOSE_CAP)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        pipeline(s)
        socks.append(s)
    peak = wait_fds(srv, base_fd)
    for s in socks:
        s.close()
    grew = (peak - base) // 1024
    assert grew < SPIKE_CONNS * 4, f"RSS grew {grew} MiB for {SPIKE_CONNS} clients"
    if sanitized(srv):
        return (f"{SPIKE_CONNS} clients: RSS {base // 1024} -> peak {peak // 1024} MiB; not "
                "expected to fall under AddressSanitizer (its allocator keeps freed memory)")
    after = wait_rss_below(srv, base + 24 * 1024)
    return (f"{SPIKE_CONNS} clients: RSS {base // 1024} -> peak {peak // 1024} -> "
            f"{after // 1024} MiB")


def t_pipelining_tls(srv):
    base_fd = quiet_fds(srv)
    base = rss_kib(srv.proc.pid)
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    raw = socket.create_connection(("127.0.0.1", srv.tls_port), timeout=CLOSE_CAP)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    pipeline(s)
    peak = wait_fds(srv, base_fd)
    s.close()
    grew = (peak - base) // 1024
    assert grew < 48, f"RSS grew {grew} MiB for one TLS client (bound 48 MiB)"
    return f"RSS {base // 1024} -> peak {peak // 1024} MiB; fds back to {base_fd}"


def upgrade_and_wait(srv, head):
    base_fd = quiet_fds(srv)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=CLOSE_CAP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(head)
    first_bytes(s)
    peak = wait_fds(srv, base_fd)
    s.close()
    st, _, body = get(srv.port, "/")
    assert st == 200 and body == b"ok\n", "the server still answers"
    return f"closed; peak RSS {peak // 1024} MiB"


def t_send_timeout_websocket(srv):
    return upgrade_and_wait(srv, b"GET /flood HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                                 b"Connection: Upgrade\r\nSec-WebSocket-Key: "
                                 b"dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def t_send_timeout_raw(srv):
    return upgrade_and_wait(srv, b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: flood\r\n"
                                 b"Connection: Upgrade\r\n\r\n")


def t_send_timeout_h2(srv):
    base_fd = quiet_fds(srv)
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 31 - 1})
    conn.increment_flow_control_window(2 ** 31 - 1 - 65535)
    for _ in range(8):
        sid = conn.get_next_available_stream_id()
        conn.send_headers(sid, [(":method", "GET"), (":path", "/big"), (":scheme", "http"),
                                (":authority", "x")], end_stream=True)
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=CLOSE_CAP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(conn.data_to_send())
    first_bytes(s)
    peak = wait_fds(srv, base_fd)
    s.close()
    return f"closed; peak RSS {peak // 1024} MiB"


def t_client_leaves(srv):
    base_fd = quiet_fds(srv)
    socks = []
    for _ in range(LEAVERS):
        s = socket.create_connection(("127.0.0.1", srv.port), timeout=CLOSE_CAP)
        s.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
        socks.append(s)
    # One more half-closes: README says that is a client that left too.
    half = socket.create_connection(("127.0.0.1", srv.port), timeout=CLOSE_CAP)
    half.sendall(b"GET /late HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + CLOSE_CAP
    while fds(srv.proc.pid) < base_fd + LEAVERS + 1 and time.monotonic() < deadline:
        time.sleep(0.05)  # every request reaches the app first
    held = fds(srv.proc.pid) - base_fd
    for s in socks:
        s.close()
    half.shutdown(socket.SHUT_WR)
    wait_fds(srv, base_fd)
    assert half.recv(100) == b"", "the half-closed client gets no answer"
    half.close()
    st, _, body = get(srv.port, "/release")
    want = f"closed={LEAVERS + 1} sent=0\n".encode()
    assert st == 200 and body == want, f"/release answered {body!r}, want {want!r}"
    return f"{held} descriptors held, all released; {body.decode().strip()}"


def chunked(body, size, ext=b""):
    out = []
    for i in range(0, len(body), size):
        piece = body[i:i + size]
        out.append(b"%x%s\r\n%s\r\n" % (len(piece), ext, piece))
    out.append(b"0\r\n\r\n")
    return b"".join(out)


def t_chunked_heavy_framing(srv):
    got = []
    for n, size in ((1000000, 16), (200000, 1)):
        wire = chunked(b"c" * n, size)
        st, _, body = request(srv.port, b"POST /len HTTP/1.1\r\nHost: x\r\n"
                              b"Transfer-Encoding: chunked\r\n\r\n" + wire)
        assert st == 200 and body == str(n).encode(), f"{n} in {size}-byte chunks: {st} {body!r}"
        got.append(f"{n} B in {size}-byte chunks ({len(wire)} B on the wire): 200")
    # Framing out of all proportion to its data: refused, never buffered.
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=CLOSE_CAP)
    s.sendall(b"POST /len HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    piece = chunked(b"c" * 1000, 1, b";" + b"e" * 2000)[:-5]
    try:
        for _ in range(20):
            s.sendall(piece)
    except (BrokenPipeError, ConnectionResetError):
        pass
    r = read_response(s)
    s.close()
    assert r and r[0] == 400, f"extension-laden framing: {r and r[0]}"
    got.append("2 MB of framing per KB of data: 400")
    return "; ".join(got)


def t_absolute_form_host(srv):
    st, _, body = get(srv.port, "http://evil/host", host="good")
    assert st == 200 and body == b"evil", f"headers.host is {body!r}"
    st, _, body = get(srv.port, "http://evil:8080/host", host="good")
    assert st == 200 and body == b"evil:8080", f"headers.host is {body!r}"
    st, _, body = get(srv.port, "/host", host="good")
    assert st == 200 and body == b"good", f"headers.host is {body!r}"
    return "the target's authority wins"


def t_status_range(srv):
    for code in (0, 99, 100, 101, 103, 199, 600, 999):
        st, _, body = get(srv.port, f"/status?{code}")
        assert st == 200 and body == b"raised", f"res:send({code}) gave {st} {body!r}"
    st, _, _ = get(srv.port, "/status?599")
    assert st == 599, f"res:send(599) gave {st}"
    st, _, _ = get(srv.port, "/status?200")
    assert st == 200
    return "outside 200..599 raises"


CASES = [
    ("pipelining to a client that never reads", t_pipelining_never_reads),
    ("memory given back after a spike", t_spike_given_back),
    ("pipelining over TLS", t_pipelining_tls),
    ("send timeout: websocket", t_send_timeout_websocket),
    ("send timeout: raw", t_send_timeout_raw),
    ("send timeout: HTTP/2", t_send_timeout_h2),
    ("clients that leave before the answer", t_client_leaves),
    ("chunked bodies with heavy framing", t_chunked_heavy_framing),
    ("absolute-form target and Host", t_absolute_form_host),
    ("res:send status range", t_status_range),
]


def make_cert(tmp):
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "1", "-subj", "/CN=localhost"],
                   check=True, capture_output=True, timeout=60)
    return cert, key


def main():
    if missing_bin():
        return 1
    only = sys.argv[1:]
    tmp = tempfile.mkdtemp()
    try:
        cert, key = make_cert(tmp)
        srv = Server(APP, args=["--tls-listen", "127.0.0.1:0", "--cert", cert, "--key", key])
    except Exception:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    start_watchdog(srv, WATCHDOG)
    passed = failed = 0
    try:
        for name, fn in CASES:
            if only and not any(o in name for o in only):
                continue
            if not srv.alive():
                print(f"not ok - {name}: the server is gone\n{srv.stderr()}")
                failed += 1
                continue
            try:
                t0 = time.monotonic()
                detail = fn(srv)
                print(f"ok - {name} ({detail}; {time.monotonic() - t0:.1f} s)")
                passed += 1
            except Exception as e:  # one failing case does not stop the others
                failed += 1
                print(f"not ok - {name}: {e}")
                if not isinstance(e, AssertionError):
                    traceback.print_exc()
    finally:
        signal_off()
        code = srv.stop()
        shutil.rmtree(tmp, ignore_errors=True)
    if code not in (0, None):
        print(f"not ok - server exit code {code}\n{srv.stderr()[-2000:]}")
        failed += 1
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


def signal_off():
    import signal
    signal.alarm(0)


if __name__ == "__main__":
    sys.exit(main())
