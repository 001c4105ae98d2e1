#!/usr/bin/env python3
"""tests/integration/test_ws_conformance.py: RFC 6455 conformance of the WebSocket layer.

Starts the real binary on 127.0.0.1 port 0 with examples/echo.lua and speaks WebSocket over
raw sockets with its own frame encoder (masked, as a client must), along the categories of the
Autobahn testsuite: framing, pings and pongs, reserved bits, opcodes, fragmentation, UTF-8
(including failing at the first invalid byte), close handling and limits. Every case uses a
fresh connection and checks the exact frames that come back (echo, pong, close code) and that
the server closes TCP after its close frame.

Run from the repo root with SWITCHYARD_BIN set. Stdlib only; every socket operation is bounded
by a timeout and the whole run by a watchdog. Prints "ok - NAME" / "not ok - NAME" per case and
a final "N passed, N failed" line; exits non-zero when a case failed.
"""
import base64
import hashlib
import os
import signal
import socket
import struct
import sys
import threading
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, case_registry, missing_bin, start_watchdog  # noqa: E402

ROOT = os.getcwd()
APP = os.path.join(ROOT, "examples", "echo.lua")
BIG_TIMEOUT = 60.0     # seconds: bound for a 16 MiB transfer
WATCHDOG = 270         # seconds: the whole run (ctest allows 300)
MIB = 1024 * 1024
MAX_MESSAGE = 16 * MIB  # examples/echo.lua: max_message_size
MAX_FRAGMENTS = 300000  # examples/echo.lua: max_fragments

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# ---- frames -----------------------------------------------------------------------------------

def xor_mask(data, key):
    """RFC 6455 5.3 masking (also unmasking) of a whole payload, fast for large ones."""
    n = len(data)
    if n == 0:
        return b""
    k = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(k, "big")).to_bytes(n, "big")


def frame(opcode, payload=b"", fin=True, rsv=0, mask=True, key=None, length=None):
    """One client frame. rsv: the three RSV bits as 0..7 (RSV1 = 4). length: the announced
    payload length when it must differ from len(payload) (a frame sent in pieces)."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    n = len(payload) if length is None else length
    b0 = (0x80 if fin else 0) | (rsv << 4) | opcode
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = key if key is not None else os.urandom(4)
    return head + key + xor_mask(payload, key)


def close_payload(code=None, reason=b""):
    if code is None:
        return b""
    if isinstance(reason, str):
        reason = reason.encode("utf-8")
    return struct.pack("!H", code) + reason


def fragments_stream(opcode, payload, size):
    """A message as a stream of `size`-byte fragments (one masking key; size % 4 == 0)."""
    assert size % 4 == 0
    key = os.urandom(4)
    masked = xor_mask(payload, key)
    out = bytearray()
    n = len(payload)
    count = max(1, (n + size - 1) // size)
    for i in range(count):
        part = masked[i * size:(i + 1) * size]
        b0 = (0x80 if i == count - 1 else 0) | (opcode if i == 0 else CONT)
        ln = len(part)
        if ln < 126:
            out += struct.pack("!BB", b0, 0x80 | ln)
        else:
            out += struct.pack("!BBH", b0, 0x80 | 126, ln)
        out += key
        out += part
    return bytes(out)


class Closed(Exception):
    """The server closed TCP."""


class WS:
    """A raw WebSocket client connection with bounded reads."""

    def __init__(self, port, path="/", extra_headers=()):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16))
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: " + key.decode(),
                 "Sec-WebSocket-Version: 13"] + list(extra_headers)
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end]
        status = head.split("\r\n", 1)[0]
        if not status.startswith("HTTP/1.1 101 "):
            raise AssertionError(f"handshake: {head!r}")
        want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        accept = [l.split(":", 1)[1].strip() for l in head.split("\r\n")
                  if l.lower().startswith("sec-websocket-accept:")]
        if accept != [want]:
            raise AssertionError(f"Sec-WebSocket-Accept {accept!r}, want {want!r}")

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out; {len(self.buf)} bytes pending")
        self.sock.settimeout(min(left, TIMEOUT))
        try:
            chunk = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError(f"timed out; {len(self.buf)} bytes pending") from None
        except ConnectionResetError:
            raise Closed("connection reset") from None
        if not chunk:
            raise Closed(f"server closed TCP ({len(self.buf)} bytes pending)")
        self.buf += chunk

    def _need(self, n, deadline):
        while len(self.buf) < n:
            self._fill(deadline)

    def send(self, data):
        self.sock.settimeout(TIMEOUT)
        self.sock.sendall(data)

    def send_slow(self, data, step=1, pause=0.001):
        """Sends data a few bytes per segment."""
        for i in range(0, len(data), step):
            self.send(data[i:i + step])
            time.sleep(pause)

    def read_frame(self, timeout=TIMEOUT):
        """Returns (opcode, payload, fin). Checks the server frame rules: unmasked, RSV 0,
        control frames final and at most 125 bytes."""
        deadline = time.monotonic() + timeout
        self._need(2, deadline)
        b0, b1 = self.buf[0], self.buf[1]
        fin, rsv, op = b0 >> 7, (b0 >> 4) & 7, b0 & 15
        if b1 & 0x80:
            raise AssertionError("server frame is masked (RFC 6455 5.1)")
        n, hl = b1 & 0x7F, 2
        if n == 126:
            self._need(4, deadline)
            n, hl = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            self._need(10, deadline)
            n, hl = struct.unpack("!Q", self.buf[2:10])[0], 10
        if rsv:
            raise AssertionError(f"server frame with RSV bits {rsv}")
        if op >= 8 and (not fin or n > 125):
            raise AssertionError(f"server control frame opcode {op} fin {fin} length {n}")
        if op not in (CONT, TEXT, BINARY, CLOSE, PING, PONG):
            raise AssertionError(f"server frame with reserved opcode {op}")
        self._need(hl + n, deadline)
        payload = bytes(self.buf[hl:hl + n])
        del self.buf[:hl + n]
        return op, payload, fin

    def read_message(self, timeout=TIMEOUT):
        """One event: ('text'|'binary', bytes) for a whole (possibly fragmented) message,
        ('ping'|'pong', payload) or ('close', code, reason)."""
        deadline = time.monotonic() + timeout
        parts, kind = [], None
        while True:
            op, payload, fin = self.read_frame(max(0.001, deadline - time.monotonic()))
            if op == CLOSE:
                if len(payload) == 0:
                    return ("close", None, b"")
                if len(payload) == 1:
                    raise AssertionError("server close frame with a 1-byte payload")
                reason = payload[2:]
                reason.decode("utf-8")  # the server's reason must be UTF-8 too
                return ("close", struct.unpack("!H", payload[:2])[0], reason)
            if op == PING:
                return ("ping", payload)
            if op == PONG:
                return ("pong", payload)
            if op == CONT:
                if kind is None:
                    raise AssertionError("server continuation without a message")
            else:
                if kind is not None:
                    raise AssertionError("server started a message inside another")
                kind = "text" if op == TEXT else "binary"
            parts.append(payload)
            if fin:
                data = b"".join(parts)
                if kind == "text":
                    data.decode("utf-8")
                return (kind, data)

    def expect_eof(self, timeout=TIMEOUT):
        """The server closes TCP with no further bytes."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
                if self.buf:
                    raise AssertionError(f"bytes after the close frame: {bytes(self.buf[:64])!r}")
        except Closed:
            if self.buf:
                raise AssertionError(f"bytes after the close frame: {bytes(self.buf[:64])!r}")
            return
        except TimeoutError:
            raise AssertionError("TCP still open after the closing handshake") from None

    def expect_nothing(self, wait=0.2):
        """No byte arrives within `wait` seconds (and TCP stays open)."""
        deadline = time.monotonic() + wait
        try:
            self._fill(deadline)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected bytes: {bytes(self.buf[:64])!r}")

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def short(v):
    if isinstance(v, (bytes, bytearray)) and len(v) > 48:
        return f"<{len(v)} bytes {bytes(v[:16])!r}...>"
    if isinstance(v, tuple):
        return "(" + ", ".join(short(x) for x in v) + ")"
    return repr(v)


def expect_events(ws, events, timeout=TIMEOUT):
    for i, want in enumerate(events):
        try:
            got = ws.read_message(timeout)
        except (Closed, TimeoutError) as e:
            raise AssertionError(f"event {i}: want {short(want)}, got {e}") from None
        if want[0] == "close":
            ok = got[0] == "close" and got[1] == want[1]
        else:
            ok = got == want
        if not ok:
            raise AssertionError(f"event {i}: want {short(want)}, got {short(got)}")


def expect_fail(ws, code, before=(), reply=True):
    """The server answers `before` events, then a close frame with `code`, then closes TCP."""
    expect_events(ws, list(before) + [("close", code)])
    if reply:
        try:
            ws.send(frame(CLOSE, close_payload(code if code not in (1005, 1006) else 1000)))
        except OSError:
            pass
    ws.expect_eof()


def finish(ws):
    """Clean closing handshake from the client: close 1000 echoed, then TCP closes."""
    ws.send(frame(CLOSE, close_payload(1000, "done")))
    expect_events(ws, [("close", 1000)])
    ws.expect_eof()


# ---- cases ------------------------------------------------------------------------------------

CASES, case = case_registry()


def echo_case(name, opcode, payload):
    @case(name)
    def run(port):
        ws = WS(port)
        ws.send(frame(opcode, payload))
        expect_events(ws, [("text" if opcode == TEXT else "binary", payload)])
        finish(ws)


def fail_case(name, code, data, before=()):
    @case(name)
    def run(port):
        ws = WS(port)
        ws.send(data)
        expect_fail(ws, code, before)


def pattern(n, seed=0):
    """n bytes of ASCII text (valid as text and as binary)."""
    base = bytes((0x21 + (i * 7 + seed) % 90) for i in range(4096))
    return (base * (n // 4096 + 1))[:n]


def binary_pattern(n):
    base = bytes(range(256))
    return (base * (n // 256 + 1))[:n]


# 1. Framing
for n in (0, 1, 125, 126, 127, 65535, 65536, 65537, MIB):
    echo_case(f"framing: text {n} bytes", TEXT, pattern(n))
    echo_case(f"framing: binary {n} bytes", BINARY, binary_pattern(n))


@case("framing: 16 MiB text in one frame")
def _(port):
    ws = WS(port)
    data = pattern(MAX_MESSAGE, 3)
    ws.send(frame(TEXT, data))
    expect_events(ws, [("text", data)], BIG_TIMEOUT)
    finish(ws)


@case("framing: 16 MiB binary in 64-byte fragments")
def _(port):
    ws = WS(port)
    data = os.urandom(MAX_MESSAGE)
    ws.sock.settimeout(BIG_TIMEOUT)
    ws.sock.sendall(fragments_stream(BINARY, data, 64))
    expect_events(ws, [("binary", data)], BIG_TIMEOUT)
    finish(ws)


@case("framing: 16 MiB text in 64-byte fragments")
def _(port):
    ws = WS(port)
    # Multi-byte characters, so code points straddle fragment boundaries.
    unit = "aé€😀".encode("utf-8")  # 1 + 2 + 3 + 4 = 10 bytes
    data = (unit * (MAX_MESSAGE // len(unit)))
    data += b"x" * (MAX_MESSAGE - len(data))
    ws.sock.settimeout(BIG_TIMEOUT)
    ws.sock.sendall(fragments_stream(TEXT, data, 64))
    expect_events(ws, [("text", data)], BIG_TIMEOUT)
    finish(ws)


@case("framing: frame sent one byte per segment")
def _(port):
    ws = WS(port)
    data = pattern(300)
    ws.send_slow(frame(TEXT, data))
    expect_events(ws, [("text", data)])
    finish(ws)


@case("framing: 64-bit length header sent one byte per segment")
def _(port):
    ws = WS(port)
    data = binary_pattern(70000)
    f = frame(BINARY, data)
    ws.send_slow(f[:14])
    ws.send(f[14:])
    expect_events(ws, [("binary", data)])
    finish(ws)


@case("framing: ten messages in one segment, echoed in order")
def _(port):
    ws = WS(port)
    msgs = [(TEXT if i % 2 else BINARY, pattern(i * 37, i)) for i in range(10)]
    ws.send(b"".join(frame(op, p) for op, p in msgs))
    expect_events(ws, [("text" if op == TEXT else "binary", p) for op, p in msgs])
    finish(ws)


@case("framing: messages in the same segment as the upgrade request")
def _(port):
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        req = ("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Key: " + key +
               "\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()
        sock.sendall(req + frame(TEXT, "early") + frame(BINARY, b"\x00\x01"))
        ws = WS.__new__(WS)
        ws.sock, ws.buf = sock, bytearray()
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in ws.buf:
            ws._fill(deadline)
        end = ws.buf.index(b"\r\n\r\n") + 4
        assert ws.buf.startswith(b"HTTP/1.1 101 "), bytes(ws.buf[:end])
        del ws.buf[:end]
        expect_events(ws, [("text", b"early"), ("binary", b"\x00\x01")])
        finish(ws)
    finally:
        sock.close()


@case("framing: masked with an all-zero key")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, "zero key", key=b"\x00\x00\x00\x00"))
    expect_events(ws, [("text", b"zero key")])
    finish(ws)


fail_case("framing: unmasked text frame -> 1002", 1002, frame(TEXT, "hello", mask=False))
fail_case("framing: unmasked binary frame -> 1002", 1002, frame(BINARY, b"\x01", mask=False))
fail_case("framing: unmasked ping -> 1002", 1002, frame(PING, b"p", mask=False))
fail_case("framing: unmasked close -> 1002", 1002, frame(CLOSE, close_payload(1000), mask=False))
fail_case("framing: unmasked frame after a valid message -> echo, 1002", 1002,
          frame(TEXT, "first") + frame(TEXT, "second", mask=False), [("text", b"first")])
fail_case("framing: 64-bit length with the top bit set -> 1002", 1002,
          struct.pack("!BBQ", 0x82, 0xFF, 1 << 63) + b"\x00\x00\x00\x00")


# 2. Pings and pongs
@case("ping: empty -> empty pong")
def _(port):
    ws = WS(port)
    ws.send(frame(PING))
    expect_events(ws, [("pong", b"")])
    finish(ws)


@case("ping: 125-byte binary payload -> same pong")
def _(port):
    ws = WS(port)
    data = bytes(range(125))
    ws.send(frame(PING, data))
    expect_events(ws, [("pong", data)])
    finish(ws)


fail_case("ping: 126-byte payload -> 1002", 1002, frame(PING, b"x" * 126))
fail_case("ping: 65536-byte payload (64-bit length) -> 1002", 1002, frame(PING, b"x" * 65536))
fail_case("ping: fragmented (FIN clear) -> 1002", 1002, frame(PING, b"p", fin=False))
fail_case("ping: valid message, then 126-byte ping in the same segment -> echo, 1002", 1002,
          frame(TEXT, "ok") + frame(PING, b"x" * 126), [("text", b"ok")])


@case("ping: ten pings in one segment -> ten pongs in order")
def _(port):
    ws = WS(port)
    ws.send(b"".join(frame(PING, f"p{i}") for i in range(10)))
    expect_events(ws, [("pong", f"p{i}".encode()) for i in range(10)])
    finish(ws)


@case("pong: unsolicited pong is ignored")
def _(port):
    ws = WS(port)
    ws.send(frame(PONG, b"unsolicited") + frame(TEXT, "after"))
    expect_events(ws, [("text", b"after")])
    finish(ws)


@case("pong: unsolicited 125-byte pong is ignored")
def _(port):
    ws = WS(port)
    ws.send(frame(PONG, b"q" * 125))
    ws.expect_nothing(0.2)
    ws.send(frame(TEXT, "after"))
    expect_events(ws, [("text", b"after")])
    finish(ws)


fail_case("pong: 126-byte pong -> 1002", 1002, frame(PONG, b"q" * 126))


@case("ping: sent one byte per segment")
def _(port):
    ws = WS(port)
    ws.send_slow(frame(PING, b"slow ping"))
    expect_events(ws, [("pong", b"slow ping")])
    finish(ws)


# 3. Reserved bits
for rsv, label in ((4, "RSV1"), (2, "RSV2"), (1, "RSV3"), (7, "RSV1+2+3")):
    fail_case(f"rsv: {label} on a text frame -> 1002", 1002, frame(TEXT, "x", rsv=rsv))
    fail_case(f"rsv: {label} on a binary frame -> 1002", 1002, frame(BINARY, b"x", rsv=rsv))
    fail_case(f"rsv: {label} on a ping -> 1002", 1002, frame(PING, b"x", rsv=rsv))
fail_case("rsv: RSV2 on a frame after a valid message in the same segment -> echo, 1002", 1002,
          frame(TEXT, "valid") + frame(TEXT, "bad", rsv=2), [("text", b"valid")])
fail_case("rsv: RSV3 on a continuation frame -> 1002", 1002,
          frame(TEXT, "a", fin=False) + frame(CONT, "b", rsv=1))
fail_case("rsv: RSV1 on a close frame -> 1002", 1002, frame(CLOSE, close_payload(1000), rsv=4))


# 4. Opcodes
for op in (3, 4, 5, 6, 7):
    fail_case(f"opcode: reserved data opcode {op} -> 1002", 1002, frame(op, b"x"))
    fail_case(f"opcode: reserved data opcode {op} after a valid message -> echo, 1002", 1002,
              frame(TEXT, "before") + frame(op, b""), [("text", b"before")])
for op in (11, 12, 13, 14, 15):
    fail_case(f"opcode: reserved control opcode {op} -> 1002", 1002, frame(op, b"x"))
    fail_case(f"opcode: reserved control opcode {op} after a ping -> pong, 1002", 1002,
              frame(PING, b"before") + frame(op, b""), [("pong", b"before")])
fail_case("opcode: reserved opcode 4 inside a fragmented message -> 1002", 1002,
          frame(TEXT, "a", fin=False) + frame(4, b"b"))


# 5. Fragmentation
@case("fragments: text in 3 fragments -> one message")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, "frag", fin=False) + frame(CONT, "ment", fin=False) + frame(CONT, "ed"))
    expect_events(ws, [("text", b"fragmented")])
    finish(ws)


@case("fragments: binary in 3 fragments, one segment each")
def _(port):
    ws = WS(port)
    ws.send(frame(BINARY, b"\x00\x01", fin=False))
    time.sleep(0.05)
    ws.send(frame(CONT, b"\x02", fin=False))
    time.sleep(0.05)
    ws.expect_nothing(0.1)
    ws.send(frame(CONT, b"\x03\xff"))
    expect_events(ws, [("binary", b"\x00\x01\x02\x03\xff")])
    finish(ws)


@case("fragments: empty fragments -> one empty text message")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, b"", fin=False) + frame(CONT, b"", fin=False) + frame(CONT, b""))
    expect_events(ws, [("text", b"")])
    finish(ws)


@case("fragments: empty first and last fragment around data")
def _(port):
    ws = WS(port)
    ws.send(frame(BINARY, b"", fin=False) + frame(CONT, b"mid", fin=False) + frame(CONT, b""))
    expect_events(ws, [("binary", b"mid")])
    finish(ws)


@case("fragments: ping interleaved in a fragmented message -> pong first, then the message")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, "one ", fin=False) + frame(PING, b"in between") +
            frame(CONT, "two ", fin=False))
    expect_events(ws, [("pong", b"in between")])
    ws.send(frame(PING, b"again") + frame(CONT, "three"))
    expect_events(ws, [("pong", b"again"), ("text", b"one two three")])
    finish(ws)


@case("fragments: pong interleaved in a fragmented message is ignored")
def _(port):
    ws = WS(port)
    ws.send(frame(BINARY, b"a", fin=False) + frame(PONG, b"x") + frame(CONT, b"b"))
    expect_events(ws, [("binary", b"ab")])
    finish(ws)


@case("fragments: close interleaved in a fragmented message -> close echoed, no message")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, "never", fin=False) + frame(CLOSE, close_payload(1000)) +
            frame(CONT, "delivered"))
    expect_events(ws, [("close", 1000)])
    ws.expect_eof()


@case("fragments: two fragmented messages back to back")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, "a", fin=False) + frame(CONT, "b") +
            frame(BINARY, b"c", fin=False) + frame(CONT, b"d"))
    expect_events(ws, [("text", b"ab"), ("binary", b"cd")])
    finish(ws)


@case("fragments: 1000 one-byte fragments")
def _(port):
    ws = WS(port)
    data = pattern(1000)
    parts = [frame(TEXT if i == 0 else CONT, data[i:i + 1], fin=(i == 999)) for i in range(1000)]
    ws.send(b"".join(parts))
    expect_events(ws, [("text", data)])
    finish(ws)


fail_case("fragments: continuation without a start -> 1002", 1002, frame(CONT, "orphan"))
fail_case("fragments: continuation (FIN clear) without a start -> 1002", 1002,
          frame(CONT, "orphan", fin=False))
fail_case("fragments: continuation after a complete message -> echo, 1002", 1002,
          frame(TEXT, "whole") + frame(CONT, "extra"), [("text", b"whole")])
fail_case("fragments: new text message while one is in progress -> 1002", 1002,
          frame(TEXT, "a", fin=False) + frame(TEXT, "b"))
fail_case("fragments: new binary message (FIN clear) while text is in progress -> 1002", 1002,
          frame(TEXT, "a", fin=False) + frame(BINARY, b"b", fin=False))
fail_case("fragments: fragmented close -> 1002", 1002,
          frame(CLOSE, close_payload(1000), fin=False))
fail_case("fragments: fragmented pong -> 1002", 1002, frame(PONG, b"p", fin=False))


# 6. UTF-8
VALID_TEXT = [
    ("ascii", b"Hello-\x7f"),
    ("greek kosme", "κόσμε".encode()),
    ("U+0080", "\u0080".encode()), ("U+07FF", "\u07ff".encode()),
    ("U+0800", "\u0800".encode()), ("U+D7FF", "\ud7ff".encode()),
    ("U+E000", "\ue000".encode()), ("U+FEFF", "\ufeff".encode()),
    ("U+FFFD", "\ufffd".encode()), ("U+FFFF", b"\xef\xbf\xbf"),
    ("U+10000", "\U00010000".encode()), ("U+10FFFF", "\U0010ffff".encode()),
    ("mixed", "a¢€😀 z".encode()),
    ("NUL", b"a\x00b"),
]
INVALID_TEXT = [
    ("lone continuation 0x80", b"\x80"),
    ("lone continuation 0xBF", b"a\xbf"),
    ("overlong NUL C0 80", b"\xc0\x80"),
    ("overlong C1 BF", b"\xc1\xbf"),
    ("overlong E0 80 80", b"\xe0\x80\x80"),
    ("overlong E0 9F BF", b"\xe0\x9f\xbf"),
    ("overlong F0 80 80 80", b"\xf0\x80\x80\x80"),
    ("overlong F0 8F BF BF", b"\xf0\x8f\xbf\xbf"),
    ("surrogate U+D800", b"\xed\xa0\x80"),
    ("surrogate U+DFFF", b"\xed\xbf\xbf"),
    ("surrogate pair", b"\xed\xa0\x80\xed\xb0\x80"),
    ("above U+10FFFF", b"\xf4\x90\x80\x80"),
    ("F5 lead", b"\xf5\x80\x80\x80"),
    ("5-byte form", b"\xf8\x88\x80\x80\x80"),
    ("6-byte form", b"\xfc\x84\x80\x80\x80\x80"),
    ("FE", b"\xfe"), ("FF", b"\xff"),
    ("truncated 2-byte at end", b"ab\xc2"),
    ("truncated 3-byte at end", b"ab\xe2\x82"),
    ("truncated 4-byte at end", b"ab\xf0\x9f\x98"),
    ("lead then ASCII", b"\xe2\x28\xa1"),
    ("kosme with surrogate inside", b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"
                                    b"\xed\xa0\x80edited"),
]

for label, data in VALID_TEXT:
    echo_case(f"utf8: valid {label}", TEXT, data)

for label, data in INVALID_TEXT:
    fail_case(f"utf8: {label} in one frame -> 1007", 1007, frame(TEXT, data))


@case("utf8: invalid text split into one-byte fragments -> 1007")
def _(port):
    ws = WS(port)
    data = "κόσμε".encode() + b"\xed\xa0\x80" + b"edited"
    ws.send(b"".join(frame(TEXT if i == 0 else CONT, data[i:i + 1], fin=(i == len(data) - 1))
                     for i in range(len(data))))
    expect_fail(ws, 1007)


for label, data in VALID_TEXT[1:]:
    @case(f"utf8: valid {label} in one-byte fragments")
    def _(port, data=data):
        ws = WS(port)
        ws.send(b"".join(frame(TEXT if i == 0 else CONT, data[i:i + 1], fin=(i == len(data) - 1))
                         for i in range(len(data))))
        expect_events(ws, [("text", data)])
        finish(ws)


@case("utf8: code point split across fragments (4-byte char 1+3 and 3+1)")
def _(port):
    ws = WS(port)
    e = "😀".encode()
    ws.send(frame(TEXT, b"x" + e[:1], fin=False) + frame(CONT, e[1:] + e[:3], fin=False) +
            frame(CONT, e[3:] + b"y"))
    expect_events(ws, [("text", b"x" + e + e + b"y")])
    finish(ws)


@case("utf8: code point split across fragments sent in separate segments")
def _(port):
    ws = WS(port)
    e = "€".encode()
    ws.send(frame(TEXT, b"price " + e[:2], fin=False))
    ws.expect_nothing(0.15)
    ws.send(frame(CONT, e[2:] + b"5"))
    expect_events(ws, [("text", b"price " + e + b"5")])
    finish(ws)


fail_case("utf8: fragmented text ending mid code point -> 1007", 1007,
          frame(TEXT, b"ok", fin=False) + frame(CONT, b"\xe2\x82"))
fail_case("utf8: valid message, then invalid one in the same segment -> echo, 1007", 1007,
          frame(TEXT, "good") + frame(TEXT, b"\xff"), [("text", b"good")])
echo_case("utf8: binary message with invalid UTF-8 is echoed as is", BINARY,
          b"\xff\xfe\xc0\x80\xed\xa0\x80")


def fail_fast_case(name, header_len, first, second_wait=None):
    """Announces a header_len-byte text frame, sends only `first` (containing the first
    invalid byte), and expects close 1007 without the rest of the frame ever being sent."""
    @case(name)
    def run(port):
        ws = WS(port)
        key = os.urandom(4)
        full = first + b"a" * (header_len - len(first))
        f = frame(TEXT, full, key=key)
        hl = len(f) - header_len
        ws.send(f[:hl + len(first)])
        expect_fail(ws, 1007)


fail_fast_case("utf8 fail-fast: 100-byte frame, invalid byte within the first 10 -> 1007 "
               "before the rest is sent", 100, b"hello\xc0\xafabc")
fail_fast_case("utf8 fail-fast: 70000-byte frame, invalid lead byte F8 at byte 5", 70000,
               b"abcd\xf8")
fail_fast_case("utf8 fail-fast: 1 MiB frame, surrogate ED A0 within the first bytes", MIB,
               b"abc\xed\xa0")
fail_fast_case("utf8 fail-fast: 100-byte frame, above U+10FFFF (F4 90)", 100, b"ab\xf4\x90")
fail_fast_case("utf8 fail-fast: 100-byte frame, overlong E0 80", 100, b"\xe0\x80")
fail_fast_case("utf8 fail-fast: 100-byte frame, lone continuation", 100, b"x\x80")


@case("utf8 fail-fast: valid partial code point at a segment end is not an error")
def _(port):
    ws = WS(port)
    data = b"abc\xe2\x82\xac" + b"d" * 94   # 100 bytes, a euro sign across the segments
    f = frame(TEXT, data)
    hl = len(f) - len(data)
    ws.send(f[:hl + 5])                      # ends after E2 82
    ws.expect_nothing(0.2)
    ws.send(f[hl + 5:])
    expect_events(ws, [("text", data)])
    finish(ws)


@case("utf8 fail-fast: invalid byte in a later segment -> 1007 at once")
def _(port):
    ws = WS(port)
    full = b"abc\xe2\x82" + b"\x28" + b"z" * 94
    f = frame(TEXT, full)
    hl = len(f) - len(full)
    ws.send(f[:hl + 5])
    ws.expect_nothing(0.2)
    ws.send(f[hl + 5:hl + 6])                # 0x28 cannot continue E2 82
    expect_fail(ws, 1007)


@case("utf8 fail-fast: invalid byte in a continuation frame announced for 100 bytes")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, "valid start ", fin=False))
    body = b"\xed\xbf\xbf" + b"z" * 97
    f = frame(CONT, body)
    hl = len(f) - len(body)
    ws.send(f[:hl + 3])
    expect_fail(ws, 1007)


# 7. Close handling
@case("close: empty close -> empty close echoed, TCP closes")
def _(port):
    ws = WS(port)
    ws.send(frame(CLOSE))
    got = ws.read_message()
    assert got == ("close", None, b""), f"got {short(got)}"
    ws.expect_eof()


@case("close: 1000 with a reason -> 1000, TCP closes")
def _(port):
    ws = WS(port)
    ws.send(frame(CLOSE, close_payload(1000, "normal closure, thanks")))
    expect_events(ws, [("close", 1000)])
    ws.expect_eof()


@case("close: 123-byte UTF-8 reason (125-byte payload) -> echoed code")
def _(port):
    ws = WS(port)
    reason = ("é" * 61 + "x").encode()
    assert len(reason) == 123
    ws.send(frame(CLOSE, close_payload(3001, reason)))
    expect_events(ws, [("close", 3001)])
    ws.expect_eof()


fail_case("close: 124-byte reason (126-byte payload) -> 1002", 1002,
          frame(CLOSE, close_payload(1000, b"r" * 124)))
fail_case("close: 1-byte payload -> 1002", 1002, frame(CLOSE, b"\x03"))
fail_case("close: reason with invalid UTF-8 -> 1007", 1007,
          frame(CLOSE, close_payload(1000, b"bad \xff reason")))
fail_case("close: reason with a surrogate -> 1007", 1007,
          frame(CLOSE, close_payload(1000, b"\xed\xa0\x80")))

for code in (0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535):
    fail_case(f"close: code {code} -> 1002", 1002, frame(CLOSE, close_payload(code)))

for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999):
    @case(f"close: code {code} -> echoed")
    def _(port, code=code):
        ws = WS(port)
        ws.send(frame(CLOSE, close_payload(code, "r")))
        expect_events(ws, [("close", code)])
        ws.expect_eof()


@case("close: data after the close frame is ignored")
def _(port):
    ws = WS(port)
    ws.send(frame(CLOSE, close_payload(1000)) + frame(TEXT, "ignored") + frame(PING, b"x"))
    expect_events(ws, [("close", 1000)])
    ws.expect_eof()


@case("close: message then close in one segment -> echo, then close")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, "last words") + frame(CLOSE, close_payload(4000)))
    expect_events(ws, [("text", b"last words"), ("close", 4000)])
    ws.expect_eof()


@case("close: close frame sent one byte per segment")
def _(port):
    ws = WS(port)
    ws.send_slow(frame(CLOSE, close_payload(1000, "slow")))
    expect_events(ws, [("close", 1000)])
    ws.expect_eof()


@case("close: TCP half-close without a close frame -> server closes TCP")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, "x"))
    expect_events(ws, [("text", b"x")])
    ws.sock.shutdown(socket.SHUT_WR)
    ws.expect_eof()


# 8. Limits (echo.lua: max_message_size 16 MiB, max_fragments 300000)
def send_in_background(ws, data):
    """Sends data from a thread (the server may close before it is all sent); returns it."""
    def run():
        try:
            ws.sock.sendall(data)
        except OSError:
            pass
    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


@case("limits: 16 MiB + 1 byte in one frame -> 1009")
def _(port):
    ws = WS(port)
    ws.sock.settimeout(BIG_TIMEOUT)
    t = send_in_background(ws, frame(BINARY, b"\x00" * (MAX_MESSAGE + 1), key=b"\0\0\0\0"))
    expect_fail(ws, 1009, reply=False)
    t.join(BIG_TIMEOUT)


@case("limits: header announcing 16 MiB + 1 -> 1009 before the payload arrives")
def _(port):
    ws = WS(port)
    ws.send(frame(BINARY, b"", length=MAX_MESSAGE + 1)[:10] + os.urandom(4) + b"abc")
    expect_fail(ws, 1009)


@case("limits: 16 MiB + 4 bytes in 64-byte fragments -> 1009")
def _(port):
    ws = WS(port)
    ws.sock.settimeout(BIG_TIMEOUT)
    t = send_in_background(ws, fragments_stream(BINARY, b"\x01" * (MAX_MESSAGE + 4), 64))
    expect_fail(ws, 1009, reply=False)
    t.join(BIG_TIMEOUT)


@case("limits: 16 MiB + 1 text in two fragments -> 1009")
def _(port):
    ws = WS(port)
    ws.sock.settimeout(BIG_TIMEOUT)
    t = send_in_background(ws, frame(TEXT, b"a" * MAX_MESSAGE, fin=False, key=b"\0\0\0\0") +
                           frame(CONT, b"b", key=b"\0\0\0\0"))
    expect_fail(ws, 1009, reply=False)
    t.join(BIG_TIMEOUT)


@case("limits: 300000 fragments pass; 300001 -> 1009")
def _(port):
    ws = WS(port)
    ws.sock.settimeout(BIG_TIMEOUT)
    empty_mid = frame(CONT, b"", fin=False, key=b"\0\0\0\0")
    ok = (frame(BINARY, b"a", fin=False) + empty_mid * (MAX_FRAGMENTS - 2) +
          frame(CONT, b"z"))
    ws.sock.sendall(ok)
    expect_events(ws, [("binary", b"az")], BIG_TIMEOUT)
    too_many = (frame(BINARY, b"a", fin=False) + empty_mid * (MAX_FRAGMENTS - 1) +
                frame(CONT, b"z"))
    t = send_in_background(ws, too_many)
    expect_fail(ws, 1009, reply=False)
    t.join(BIG_TIMEOUT)


@case("limits: server stays usable after a 1009")
def _(port):
    ws = WS(port)
    ws.send(frame(TEXT, b"", length=MAX_MESSAGE + 1)[:10] + os.urandom(4))
    expect_fail(ws, 1009)
    ws2 = WS(port)
    ws2.send(frame(TEXT, "still here"))
    expect_events(ws2, [("text", b"still here")])
    finish(ws2)


# ---- runner -----------------------------------------------------------------------------------

def main():
    if missing_bin():
        return 1
    srv = Server(APP)
    start_watchdog(srv, WATCHDOG)
    passed = failed = 0
    only = os.environ.get("WS_CASE")
    try:
        for name, fn in CASES:
            if only and only not in name:
                continue
            t0 = time.monotonic()
            try:
                fn(srv.port)
                passed += 1
                print(f"ok - {name} ({time.monotonic() - t0:.2f} s)", flush=True)
            except Exception as e:  # a failed case, whatever raised
                failed += 1
                print(f"not ok - {name}: {type(e).__name__}: {e}", flush=True)
                if os.environ.get("WS_TRACE"):
                    traceback.print_exc()
            if not srv.alive():
                failed += 1
                print(f"not ok - server died after '{name}' "
                      f"(exit {srv.proc.returncode}); stderr: {srv.stderr()[-2000:]}")
                break
    finally:
        code = srv.stop()
        signal.alarm(0)
    if code != 0:
        failed += 1
        print(f"not ok - server exit code {code}, want 0; stderr: {srv.stderr()[-2000:]}")
    else:
        passed += 1
        print("ok - server exits 0 on SIGTERM")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
