"""tests/integration/attackers.py: raw-socket clients for the bounded-input tests (not a test).

Used by test_ws_ping_flood.py, test_ws_inflate_ratio.py and test_input_budget.py with the
fixture app bounds_app.lua. Every socket operation is bounded by a timeout; nothing here waits
on the machine's speed except through those caps.
"""
import base64
import os
import socket
import struct
import sys
import time
import traceback
import zlib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, missing_bin, ws_frame  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "bounds_app.lua")
MIB = 1024 * 1024
CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
KEY = base64.b64encode(b"bounds-test-key!").decode()
MASK = b"\x11\x22\x33\x44"


# ---- /proc ------------------------------------------------------------------------------------

def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise KeyError("VmRSS")


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ---- HTTP/1.1 ---------------------------------------------------------------------------------

def http_get(port, path="/", timeout=10.0):
    """Status and body of one GET on a fresh connection."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = read_all(s, timeout)
    finally:
        s.close()
    return parse_status(data)


def read_all(s, timeout):
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def parse_status(data):
    if not data.startswith(b"HTTP/1.1 "):
        return None, data
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head[9:12]), body


# ---- WebSocket --------------------------------------------------------------------------------

def frame(opcode, payload=b"", fin=True, rsv=0):
    """One client frame masked with MASK."""
    return ws_frame(opcode, payload, fin, rsv, MASK)


def deflate_message(data):
    """data compressed on its own (no context), without the 00 00 ff ff tail (RFC 7692 7.2.1)."""
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def inflate_message(data):
    z = zlib.decompressobj(-15)
    return z.decompress(data + b"\x00\x00\xff\xff")


def parse_frame(buf):
    """(fin, rsv, opcode, payload, rest) for the first whole server frame in buf, or None."""
    if len(buf) < 2:
        return None
    fin, rsv, opcode, n = buf[0] >> 7, (buf[0] >> 4) & 7, buf[0] & 15, buf[1] & 0x7F
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
    return fin, rsv, opcode, buf[pos:pos + n], buf[pos + n:]


def close_code(payload):
    return struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None


class WS:
    """A client WebSocket over a raw socket; extensions: the Sec-WebSocket-Extensions offer."""

    def __init__(self, port, path, extensions=None, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.timeout = timeout
        ext = f"Sec-WebSocket-Extensions: {extensions}\r\n" if extensions else ""
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                           f"Connection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n"
                           f"Sec-WebSocket-Version: 13\r\n{ext}\r\n").encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"closed during the handshake: {self.buf!r}")
            self.buf += chunk
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        if not head.startswith(b"HTTP/1.1 101"):
            raise AssertionError(f"no 101: {head!r}")
        self.head = head.decode("latin-1")
        self.eof = False

    def send(self, data):
        self.sock.sendall(data)

    def read_frame(self, timeout=None):
        """(fin, rsv, opcode, payload), or None on timeout or EOF (self.eof tells)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            f = parse_frame(self.buf)
            if f:
                self.buf = f[4]
                return f[:4]
            left = deadline - time.monotonic()
            if left <= 0 or self.eof:
                return None
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(1 << 20)
            except socket.timeout:
                return None
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.eof = True
                continue
            self.buf += chunk

    def until_close(self, timeout=None):
        """Reads until a close frame: (close code or None, frames before it)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = []
        while True:
            left = deadline - time.monotonic()
            f = self.read_frame(left) if left > 0 else None
            if f is None:
                return None, seen
            if f[2] == CLOSE:
                return close_code(f[3]), seen
            seen.append(f)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# ---- running cases ----------------------------------------------------------------------------

def run(cases, watchdog=240, app=APP):
    """Runs each (name, fn(srv)) against a fresh server with app (so one attack's memory does
    not hide another's) and prints TAP-like lines."""
    if missing_bin():
        return 1
    # Under AddressSanitizer freed memory waits in a quarantine (256 MiB by default) before it
    # is reused, which RSS would count as held; a small one keeps the figures about what the
    # server holds. (No effect on other builds.)
    opts = os.environ.get("ASAN_OPTIONS", "")
    if "quarantine_size_mb" not in opts:
        os.environ["ASAN_OPTIONS"] = (opts + ":" if opts else "") + "quarantine_size_mb=4"
    import signal
    passed = failed = 0
    box = {}

    def watchdog_fired(signum, frame_):
        if box.get("srv"):
            box["srv"].stop()
        print(f"not ok - watchdog: the run took more than {watchdog} s")
        print(f"{passed} passed, {failed + 1} failed")
        os._exit(1)

    signal.signal(signal.SIGALRM, watchdog_fired)
    signal.alarm(watchdog)
    for name, fn in cases:
        srv = box["srv"] = Server(app)
        try:
            t0 = time.monotonic()
            detail = fn(srv)
            if not srv.alive():
                raise AssertionError(f"the server is gone\n{srv.stderr()}")
            print(f"ok - {name} ({detail}; {time.monotonic() - t0:.1f} s)", flush=True)
            passed += 1
        except Exception as e:  # one failing case does not stop the others
            failed += 1
            print(f"not ok - {name}: {e}", flush=True)
            if not isinstance(e, AssertionError):
                traceback.print_exc()
        finally:
            code = srv.stop()
            box["srv"] = None
        if code not in (0, -15):
            failed += 1
            print(f"not ok - {name}: the server exited with {code}\n{srv.stderr()}")
    signal.alarm(0)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0
