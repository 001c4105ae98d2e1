#!/usr/bin/env python3
"""tests/integration/test_attacks.py: hostile, stalled and idle clients against the real binary.

Starts switchyard with tests/integration/attacks_app.lua (header_timeout 2 s, WebSocket paths
with small limits and timeouts) and checks that:
  - a slowloris client (one header byte per second) gets 408 after header_timeout;
  - 10,000 tiny header fields get 431 quickly, for little server CPU time (from /proc);
  - a flood of 100,000 one-byte continuation frames is closed with 1009 once max_fragments is
    passed, while the server's peak RSS stays bounded;
  - a WebSocket peer that never answers the server's close is cut after close_timeout;
  - an idle WebSocket is pinged at ping_interval and closed with 1001 at idle_timeout;
  - on SIGTERM with a message queued on each of 1,000 WebSockets, every client gets its message,
    then close 1001, and the server exits 0 within the graceful stop bound (5 s).

Run from the repo root with SWITCHYARD_BIN set. Stdlib only; every wait is bounded and the whole
run has a watchdog. Prints "ok - NAME" / "not ok - NAME" per case and "N passed, N failed".
"""
import base64
import os
import resource
import selectors
import signal
import socket
import struct
import sys
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, missing_bin, start_watchdog, ws_frame  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "attacks_app.lua")
WATCHDOG = 240           # seconds: the whole run (ctest allows 300)
HEADER_TIMEOUT = 2.0     # attacks_app.lua: app.http.header_timeout
MAX_FRAGMENTS = 1000     # attacks_app.lua: /frag
CLOSE_TIMEOUT = 1.0      # attacks_app.lua: /noanswer
PING_INTERVAL = 0.5      # attacks_app.lua: /idle
IDLE_TIMEOUT = 1.5       # attacks_app.lua: /idle
GRACE = 5.0              # README: graceful stop
FANOUT = 1000            # WebSockets held open across SIGTERM
FANOUT_BYTES = 32 * 1024  # the message queued on each of them
NOFILE = FANOUT + 1024   # descriptors the test and the server need

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KEY = base64.b64encode(b"attack-test-key!").decode()
MASK = b"\x37\xfa\x21\x3d"


def raise_nofile():
    """Soft RLIMIT_NOFILE up to NOFILE (bounded by the hard limit); also the server's
    preexec_fn. Returns the soft limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = NOFILE if hard == resource.RLIM_INFINITY else min(NOFILE, hard)
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- /proc ------------------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of pid, in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def status_kib(pid, field):
    """A kB field of /proc/PID/status (VmRSS, VmHWM)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


# ---- WebSocket frames -------------------------------------------------------------------------

def frame(opcode, payload=b"", fin=True):
    """One client frame masked with MASK."""
    return ws_frame(opcode, payload, fin, mask=MASK)


def parse_frame(buf):
    """(fin, opcode, payload, rest) for the first whole server frame in buf, or None."""
    if len(buf) < 2:
        return None
    fin, opcode, n = buf[0] >> 7, buf[0] & 15, buf[1] & 0x7F
    pos = 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, pos = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, pos = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < pos + n:
        return None
    return fin, opcode, buf[pos:pos + n], buf[pos + n:]


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


class WS:
    """A blocking client WebSocket over a raw socket."""

    def __init__(self, port, path, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(TIMEOUT)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"closed during the handshake: {self.buf!r}")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"no 101: {head!r}")

    def send(self, data):
        self.sock.sendall(data)

    def recv_frame(self, timeout=TIMEOUT):
        """(fin, opcode, payload), or None when the server closed TCP."""
        deadline = time.monotonic() + timeout
        while True:
            f = parse_frame(self.buf)
            if f:
                self.buf = f[3]
                return f[:3]
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("timed out waiting for a frame")
            self.sock.settimeout(left)
            chunk = self.sock.recv(65536)
            if not chunk:
                return None
            self.buf += chunk

    def wait_eof(self, timeout):
        """Reads until the server closes TCP; returns the seconds it took."""
        start = time.monotonic()
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"TCP still open after {timeout} s")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                return time.monotonic() - start

    def close(self):
        self.sock.close()


# ---- cases ------------------------------------------------------------------------------------

def test_slowloris(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    head = b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 100
    start = time.monotonic()
    got = b""
    sent = 0
    s.setblocking(False)
    while time.monotonic() - start < HEADER_TIMEOUT + 4:
        try:
            s.send(head[sent:sent + 1])
            sent += 1
        except (BrokenPipeError, ConnectionResetError):
            pass
        step_end = time.monotonic() + 1.0
        while time.monotonic() < step_end:
            sel = selectors.DefaultSelector()
            sel.register(s, selectors.EVENT_READ)
            ready = sel.select(step_end - time.monotonic())
            sel.close()
            if not ready:
                continue
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                break
            got += chunk
        if got:
            break
    elapsed = time.monotonic() - start
    s.close()
    assert got.startswith(b"HTTP/1.1 408"), f"expected 408, got {got[:80]!r}"
    assert HEADER_TIMEOUT - 0.3 <= elapsed <= HEADER_TIMEOUT + 15, f"408 after {elapsed:.2f} s"
    assert sent <= 5, f"{sent} bytes were accepted one per second"
    return f"408 after {elapsed:.2f} s"


def test_many_headers(srv):
    req = (b"GET / HTTP/1.1\r\nHost: x\r\n" + b"a: b\r\n" * 10000 + b"\r\n")
    cpu0 = cpu_seconds(srv.proc.pid)
    start = time.monotonic()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
    try:
        s.sendall(req)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server may answer and stop reading before all of it arrived
    got = b""
    try:
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    except ConnectionResetError:
        pass
    elapsed = time.monotonic() - start
    s.close()
    cpu = cpu_seconds(srv.proc.pid) - cpu0
    assert got.startswith(b"HTTP/1.1 431"), f"expected 431, got {got[:80]!r}"
    assert elapsed < 15, f"431 took {elapsed:.2f} s"
    assert cpu < 1.0, f"the server used {cpu:.2f} s of CPU for it"
    return f"431 in {elapsed * 1000:.0f} ms, server CPU {cpu:.2f} s"


def test_fragment_flood(srv):
    ws = WS(srv.port, "/frag")
    # Exactly max_fragments pieces still make a message.
    ok = frame(TEXT, b"x", fin=False) + frame(CONT, b"x", fin=False) * (MAX_FRAGMENTS - 2) + \
        frame(CONT, b"x")
    ws.send(ok)
    f = ws.recv_frame()
    assert f and f[1] == TEXT and f[2] == b"x" * MAX_FRAGMENTS, f"no echo of {MAX_FRAGMENTS} pieces"
    rss0 = status_kib(srv.proc.pid, "VmRSS")
    flood = frame(TEXT, b"y", fin=False) + frame(CONT, b"y", fin=False) * 99999
    try:
        ws.send(flood)
    except (BrokenPipeError, ConnectionResetError):
        pass  # closed before the flood was all sent
    while True:
        f = ws.recv_frame()
        assert f is not None, "TCP closed without a close frame"
        if f[1] == CLOSE:
            break
        assert f[1] in (PING, PONG), f"unexpected frame {f[1]} during the flood"
    assert close_code(f[2]) == 1009, f"close code {close_code(f[2])}, want 1009"
    ws.wait_eof(CLOSE_TIMEOUT + 5)
    ws.close()
    hwm = status_kib(srv.proc.pid, "VmHWM")
    assert hwm - rss0 < 16 * 1024, f"peak RSS {hwm} KiB against {rss0} KiB before the flood"
    return f"RSS {rss0} KiB before, peak {hwm} KiB"


def test_close_not_answered(srv):
    ws = WS(srv.port, "/noanswer")
    ws.send(frame(TEXT, b"hi"))
    f = ws.recv_frame()
    assert f and f[1] == CLOSE and close_code(f[2]) == 1000, f"want close 1000, got {f!r}"
    took = ws.wait_eof(CLOSE_TIMEOUT + 20)
    ws.close()
    assert CLOSE_TIMEOUT - 0.3 <= took <= CLOSE_TIMEOUT + 15, f"TCP closed after {took:.2f} s"
    return f"TCP closed {took:.2f} s after the close frame"


def test_idle(srv):
    ws = WS(srv.port, "/idle")
    start = time.monotonic()
    first_ping = None
    while True:
        f = ws.recv_frame(IDLE_TIMEOUT + 3)
        assert f is not None, "TCP closed without a close frame"
        t = time.monotonic() - start
        if f[1] == PING and first_ping is None:
            first_ping = t
        elif f[1] == CLOSE:
            break
        elif f[1] != PING:
            raise AssertionError(f"unexpected opcode {f[1]}")
    assert first_ping is not None, "no ping before the idle close"
    assert PING_INTERVAL - 0.2 <= first_ping <= PING_INTERVAL + 0.5, f"ping at {first_ping:.2f} s"
    assert close_code(f[2]) == 1001, f"close code {close_code(f[2])}, want 1001"
    assert IDLE_TIMEOUT - 0.2 <= t <= IDLE_TIMEOUT + 0.8, f"close at {t:.2f} s"
    ws.send(frame(CLOSE, f[2][:2]))
    ws.wait_eof(TIMEOUT)
    ws.close()
    return f"first ping {first_ping:.2f} s, close 1001 at {t:.2f} s"


def test_sigterm_fanout(srv):
    """Runs last: it stops the server."""
    conns = []
    for _ in range(FANOUT):
        conns.append(WS(srv.port, "/fanout", rcvbuf=4096))
    trigger = conns[0]
    trigger.send(frame(TEXT, f"go {FANOUT_BYTES}".encode()))
    # The trigger's own copy comes first, then "sent": by then every copy is queued.
    want = b"m" * FANOUT_BYTES
    f = trigger.recv_frame()
    assert f and f[1] == TEXT and f[2] == want, "trigger did not get its copy"
    f = trigger.recv_frame()
    assert f and f[1] == TEXT and f[2] == b"sent", f"want 'sent', got {f!r}"
    srv.proc.send_signal(signal.SIGTERM)
    sig_at = time.monotonic()

    # Read every connection without blocking: message, then close 1001 (answered), then EOF.
    sel = selectors.DefaultSelector()
    state = {}
    for i, ws in enumerate(conns):
        ws.sock.setblocking(False)
        state[ws.sock.fileno()] = [ws, [], i == 0]  # ws, frames, message already seen
        sel.register(ws.sock, selectors.EVENT_READ)
    problems = []
    done = 0
    deadline = sig_at + GRACE + 3
    while done < len(conns) and time.monotonic() < deadline:
        for key, _ in sel.select(0.2):
            ws, frames, _seen = st = state[key.fd]
            try:
                chunk = ws.sock.recv(262144)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                chunk = b""
            if chunk:
                ws.buf += chunk
                while True:
                    f = parse_frame(ws.buf)
                    if not f:
                        break
                    ws.buf = f[3]
                    frames.append(f[:3])
                    if f[1] == CLOSE:
                        try:
                            ws.sock.send(frame(CLOSE, f[2][:2]))
                        except OSError:
                            pass
                continue
            sel.unregister(ws.sock)
            done += 1
            ops = [f[1] for f in frames]
            if st[2]:
                ok = ops == [CLOSE]
            else:
                ok = ops == [TEXT, CLOSE] and frames[0][2] == want
            if not ok or close_code(frames[-1][2]) != 1001:
                problems.append(f"conn {len(problems)}: frames {[(o, len(p)) for _, o, p in frames]}")
    sel.close()
    missing = len(conns) - done
    try:
        code = srv.proc.wait(max(0.1, deadline - time.monotonic()))
    except Exception:
        code = "still running"
    exit_at = time.monotonic() - sig_at
    for ws in conns:
        ws.close()
    assert missing == 0, f"{missing} connections still open {exit_at:.1f} s after SIGTERM"
    assert not problems, f"{len(problems)} bad connections, e.g. {problems[:3]}"
    assert code == 0, f"exit code {code}"
    assert exit_at <= GRACE + 0.5, f"exited {exit_at:.2f} s after SIGTERM"
    return f"exit 0 {exit_at:.2f} s after SIGTERM"


CASES = [
    ("slowloris: one header byte per second gets 408 after header_timeout", test_slowloris),
    ("10,000 tiny headers: 431 quickly, little CPU", test_many_headers),
    ("100,000 continuation fragments: 1009 past max_fragments, bounded RSS", test_fragment_flood),
    ("unanswered close: TCP closed after close_timeout", test_close_not_answered),
    ("idle WebSocket: ping at ping_interval, 1001 at idle_timeout", test_idle),
    (f"SIGTERM with a message queued on {FANOUT} WebSockets: all delivered, 1001, exit 0",
     test_sigterm_fanout),
]


def main():
    if missing_bin():
        return 1
    limit = raise_nofile()
    if limit < NOFILE:
        print(f"not ok - RLIMIT_NOFILE is {limit}, need {NOFILE}")
        print("0 passed, 1 failed")
        return 1
    srv = Server(APP, preexec_fn=raise_nofile)
    start_watchdog(srv, WATCHDOG)
    passed = failed = 0
    try:
        for name, fn in CASES:
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
        signal.alarm(0)
        srv.stop()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
