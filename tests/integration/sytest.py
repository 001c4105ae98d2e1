"""tests/integration/sytest.py: helpers shared by the Python integration tests (not a test).

The tests run as `/usr/bin/python3 tests/integration/test_x.py` from the repo root; each puts
this file's directory on sys.path and imports what it needs from here:

    sys.dont_write_bytecode = True
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from sytest import BIN, TIMEOUT, Server, missing_bin, start_watchdog

Server starts the real binary (SWITCHYARD_BIN) on 127.0.0.1 port 0 and reads the port from its
"listening on" line; every wait is bounded by TIMEOUT. Server(app, args=[...]) adds arguments
(e.g. "--tls-listen", "127.0.0.1:0", "--cert", ...): then `tls_port` is the first https port.
"""
import os
import select
import signal
import subprocess
import sys
import tempfile
import time

BIN = os.environ.get("SWITCHYARD_BIN")
TIMEOUT = 5.0  # seconds: bound for one wait


def read_shared(f):
    """The text of file f (a child's stderr or stdout) read without moving its offset. The child
    writes through the same open file, so the offset is shared: a seek(0) before reading would
    make a line the child writes meanwhile land over the start of the file."""
    out, off = [], 0
    while True:
        chunk = os.pread(f.fileno(), 1 << 16, off)
        if not chunk:
            return b"".join(out).decode("utf-8", "replace")
        out.append(chunk)
        off += len(chunk)


class Server:
    """The switchyard binary on a free loopback port; stop() returns the exit code."""

    def __init__(self, app, preexec_fn=None, args=(), listen=True):
        self.log = tempfile.TemporaryFile()
        argv = [BIN] + (["--listen", "127.0.0.1:0"] if listen else []) + list(args) + [app]
        want = int(listen) + sum(1 for a in args if a == "--tls-listen")
        self.proc = subprocess.Popen(argv,
                                     stdout=subprocess.PIPE, stderr=self.log,
                                     stdin=subprocess.DEVNULL, preexec_fn=preexec_fn)
        self.port = None
        self.tls_port = None
        deadline = time.monotonic() + TIMEOUT
        buf = b""
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.proc.stdout], [], [], 0.05)
            if r:
                chunk = os.read(self.proc.stdout.fileno(), 4096)
                if not chunk:
                    break
                buf += chunk
                lines = [ln for ln in buf.decode("utf-8", "replace").split("\n")[:-1]
                         if ln.startswith("listening on ")]
                for line in lines:
                    if line.startswith("listening on http://127.0.0.1:") and not self.port:
                        self.port = int(line.rsplit(":", 1)[1])
                    if line.startswith("listening on https://127.0.0.1:") and not self.tls_port:
                        self.tls_port = int(line.rsplit(":", 1)[1])
                if len(lines) >= want:
                    return
            if self.proc.poll() is not None:
                break
        code = self.stop()
        raise RuntimeError(f"server did not start (exit {code}); stdout {buf!r}; "
                           f"stderr {self.stderr()!r}")

    def stderr(self):
        return read_shared(self.log)

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(8)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
                return "timeout"
        return self.proc.returncode


def missing_bin():
    """True (after printing a failed run) when SWITCHYARD_BIN is not set."""
    if BIN:
        return False
    print("SWITCHYARD_BIN is not set", file=sys.stderr)
    print("0 passed, 1 failed")
    return True


def start_watchdog(srv, seconds):
    """Bounds the whole run: after `seconds`, stops srv, reports one failure and exits 1.
    Cancel with signal.alarm(0)."""
    def watchdog(signum, frame_):
        srv.stop()
        print(f"not ok - watchdog: the run took more than {seconds} s")
        print("0 passed, 1 failed")
        os._exit(1)

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(seconds)


def case_registry():
    """A list of (name, fn) cases and a decorator, @test("name"), that appends to it."""
    cases = []

    def test(name):
        def reg(fn):
            cases.append((name, fn))
            return fn
        return reg
    return cases, test


def run_cases(cases, seconds=240):
    """Runs each (name, fn) of cases in turn, printing `ok - name` or `not ok - name` with the
    traceback, then `N passed, N failed`; the whole run is bounded by `seconds` (a watchdog
    prints `not ok - watchdog` and exits 1). Returns the exit status: 1 if any case failed."""
    import traceback
    signal.signal(signal.SIGALRM, lambda *a: (print("not ok - watchdog"), os._exit(1)))
    signal.alarm(seconds)
    if missing_bin():
        return 1
    failed = 0
    for name, fn in cases:
        try:
            fn()
            print(f"ok - {name}", flush=True)
        except Exception:
            failed += 1
            print(f"not ok - {name}", flush=True)
            traceback.print_exc()
    print(f"{len(cases) - failed} passed, {failed} failed")
    return 1 if failed else 0


# ---- a raw WebSocket client, for tests that control every byte on the wire -----------------

def recv_exact(s, n):
    """n bytes from socket s; raises RuntimeError if it closes first."""
    out = b""
    while len(out) < n:
        got = s.recv(n - len(out))
        if not got:
            raise RuntimeError(f"connection closed after {len(out)} of {n} bytes")
        out += got
    return out


def ws_frame(opcode, payload, fin=True, rsv=0, mask=None):
    """One client frame, masked as RFC 6455 requires of clients (with mask, 4 bytes, or a
    random key); rsv sets the RSV1-3 bits."""
    import struct
    mask = mask or os.urandom(4)
    n = len(payload)
    key = (mask * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    if n < 126:
        head = struct.pack("!BB", b0, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", b0, 0x80 | 127, n)
    return head + mask + masked


def ws_read_frame(s):
    """One server frame from socket s: (opcode, fin, payload)."""
    import struct
    b0, b1 = recv_exact(s, 2)
    n = b1 & 0x7F
    if n == 126:
        n = struct.unpack("!H", recv_exact(s, 2))[0]
    elif n == 127:
        n = struct.unpack("!Q", recv_exact(s, 8))[0]
    return b0 & 0x0F, bool(b0 & 0x80), recv_exact(s, n)


def http_upgrade(port, path, headers):
    """A TCP connection to 127.0.0.1:port that sent GET path with the given header lines (the
    Upgrade offer; Host is added) and got 101 back, read up to the end of its head; TCP_NODELAY
    on, so each sendall goes out as written."""
    import socket
    s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        got = s.recv(1)
        if not got:
            raise RuntimeError("closed during the upgrade")
        head += got
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"no 101: {head!r}")
    return s


def ws_upgrade(port, path="/"):
    """http_upgrade to a WebSocket, no extension offered."""
    import base64
    key = base64.b64encode(os.urandom(16)).decode()
    return http_upgrade(port, path, "Upgrade: websocket\r\nConnection: Upgrade\r\n"
                                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n")


def run_app_cases(app_source, cases, seconds=120):
    """Writes app_source to a temporary app, starts the server on it, runs cases, each (name,
    fn(server)), through run_cases, then stops it: a server that did not exit cleanly fails
    the run too. Returns the exit status."""
    if missing_bin():
        return 1
    app = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    app.write(app_source)
    app.close()
    srv = Server(app.name)
    try:
        rc = run_cases([(name, (lambda f: lambda: f(srv))(fn)) for name, fn in cases], seconds)
    finally:
        code = srv.stop()
        os.unlink(app.name)
    if code not in (0, -signal.SIGTERM):
        print(f"not ok - server exit code {code}: {srv.stderr()[-2000:]}")
        return 1
    return rc
