#!/usr/bin/env python3
"""tests/integration/test_ws_deflate.py: permessage-deflate (RFC 7692) over raw sockets.

Starts the real binary with tests/integration/ws_deflate_app.lua and speaks WebSocket with its
own frame encoder and Python's zlib, along Autobahn|Testsuite sections 12 and 13: negotiation
answers for each preset and offer (parameters with and without values, quoted values, several
offers, declined offers), compressed messages of many sizes in one frame and in fragments,
text and binary, every parameter combination, context takeover on and off (both directions),
small window bits, messages below the threshold, publish, and the failures: RSV1 on control
or continuation frames or without the extension (1002), corrupt data and invalid UTF-8 once
inflated (1007), and a zip bomb (1009, or 1008 past the inflation ratio; the server's memory
stays flat).

Run from the repo root with SWITCHYARD_BIN set. Prints "ok - NAME" / "not ok - NAME" per case
and a final "N passed, N failed" line; exits non-zero when a case failed.
"""
import base64
import hashlib
import os
import signal
import socket
import struct
import sys
import time
import traceback
import zlib

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, case_registry, missing_bin, start_watchdog  # noqa: E402
from test_ws_conformance import (CLOSE, CONT, PING, PONG, TEXT, BINARY, Closed,  # noqa: E402
                                 close_payload, frame)

ROOT = os.getcwd()
APP = os.path.join(ROOT, "tests", "integration", "ws_deflate_app.lua")
WATCHDOG = 200
MIB = 1024 * 1024
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TAIL = b"\x00\x00\xff\xff"


class WSZ:
    """A raw WebSocket client that may offer permessage-deflate."""

    def __init__(self, port, path, offer=None):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        key = base64.b64encode(os.urandom(16))
        lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
                 "Connection: Upgrade", "Sec-WebSocket-Key: " + key.decode(),
                 "Sec-WebSocket-Version: 13"]
        if offer is not None:
            offers = offer if isinstance(offer, list) else [offer]
            lines += ["Sec-WebSocket-Extensions: " + o for o in offers]
        self.sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        deadline = time.monotonic() + TIMEOUT
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        end = self.buf.index(b"\r\n\r\n") + 4
        head = bytes(self.buf[:end]).decode("latin-1")
        del self.buf[:end]
        if not head.startswith("HTTP/1.1 101 "):
            raise AssertionError(f"handshake: {head!r}")
        fields = [l.split(":", 1) for l in head.split("\r\n")[1:] if ":" in l]
        accept = [v.strip() for k, v in fields if k.lower() == "sec-websocket-accept"]
        want = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
        if accept != [want]:
            raise AssertionError(f"Sec-WebSocket-Accept {accept!r}")
        ext = [v.strip() for k, v in fields if k.lower() == "sec-websocket-extensions"]
        if len(ext) > 1:
            raise AssertionError(f"several Sec-WebSocket-Extensions: {ext!r}")
        self.ext = ext[0] if ext else None
        self.params = {}
        if self.ext:
            parts = [p.strip() for p in self.ext.split(";")]
            if parts[0] != "permessage-deflate":
                raise AssertionError(f"extension {self.ext!r}")
            for p in parts[1:]:
                k, _, v = p.partition("=")
                if k in self.params:
                    raise AssertionError(f"duplicate parameter in {self.ext!r}")
                self.params[k] = v or True
        # Our side of the agreement.
        sbits = int(self.params.get("server_max_window_bits", 15))
        self.cbits = int(self.params.get("client_max_window_bits", 15))
        self.server_reset = "server_no_context_takeover" in self.params
        self.client_reset = "client_no_context_takeover" in self.params
        # The server's window may be smaller than announced; inflating with exactly the
        # announced window catches a server that goes past it.
        self.inflater = zlib.decompressobj(-max(sbits, 9))
        self.deflater = None

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
            raise Closed("server closed TCP")
        self.buf += chunk

    def send(self, data):
        self.sock.settimeout(TIMEOUT)
        self.sock.sendall(data)

    def compress(self, data, reset=None, bits=None):
        """Our compressed payload of one message (tail removed), in the agreed context."""
        if self.deflater is None or (self.client_reset if reset is None else reset):
            self.deflater = zlib.compressobj(6, zlib.DEFLATED, -(bits or max(self.cbits, 9)))
        out = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4] or b"\x00"

    def send_compressed(self, opcode, data, fragments=1):
        z = self.compress(data)
        step = max(1, -(-len(z) // fragments))
        parts = [z[i:i + step] for i in range(0, len(z), step)] or [b""]
        out = b""
        for i, p in enumerate(parts):
            out += frame(opcode if i == 0 else CONT, p, fin=i == len(parts) - 1,
                         rsv=4 if i == 0 else 0)
        self.send(out)

    def read_frame(self, timeout=TIMEOUT):
        deadline = time.monotonic() + timeout
        while len(self.buf) < 2:
            self._fill(deadline)
        b0, b1 = self.buf[0], self.buf[1]
        fin, rsv, op = b0 >> 7, (b0 >> 4) & 7, b0 & 15
        assert not b1 & 0x80, "server frame is masked"
        n, hl = b1 & 0x7F, 2
        if n == 126:
            while len(self.buf) < 4:
                self._fill(deadline)
            n, hl = struct.unpack("!H", self.buf[2:4])[0], 4
        elif n == 127:
            while len(self.buf) < 10:
                self._fill(deadline)
            n, hl = struct.unpack("!Q", self.buf[2:10])[0], 10
        while len(self.buf) < hl + n:
            self._fill(deadline)
        payload = bytes(self.buf[hl:hl + n])
        del self.buf[:hl + n]
        if rsv & 3 or (rsv and (op == CONT or op >= 8)):
            raise AssertionError(f"server frame opcode {op} with RSV {rsv}")
        if rsv and not self.ext:
            raise AssertionError("RSV1 from the server without the extension")
        return op, payload, fin, rsv

    def read_message(self, timeout=TIMEOUT):
        """('text'|'binary', data, compressed, wire_len) | ('close', code) | ('ping', p)."""
        parts, kind, compressed = [], None, False
        while True:
            op, payload, fin, rsv = self.read_frame(timeout)
            if op == CLOSE:
                return ("close", struct.unpack("!H", payload[:2])[0] if payload else None)
            if op == PING:
                return ("ping", payload)
            if op == PONG:
                return ("pong", payload)
            if op != CONT:
                kind = "text" if op == TEXT else "binary"
                compressed = bool(rsv)
            parts.append(payload)
            if fin:
                wire = b"".join(parts)
                data = wire
                if compressed:
                    data = self.inflater.decompress(wire + TAIL)
                    if self.server_reset:
                        self.inflater = zlib.decompressobj(-self.inflater_bits())
                if kind == "text":
                    data.decode("utf-8")
                return (kind, data, compressed, len(wire))

    def inflater_bits(self):
        return max(int(self.params.get("server_max_window_bits", 15)), 9)

    def expect_close(self, code):
        got = self.read_message()
        if got[:2] != ("close", code):
            raise AssertionError(f"want close {code}, got {short(got)}")
        try:
            self.send(frame(CLOSE, close_payload(code)))
        except OSError:
            pass
        deadline = time.monotonic() + TIMEOUT
        try:
            while True:
                self._fill(deadline)
        except Closed:
            return
        except TimeoutError:
            raise AssertionError("TCP still open after the close") from None

    def finish(self):
        self.send(frame(CLOSE, close_payload(1000)))
        got = self.read_message()
        assert got[:2] == ("close", 1000), short(got)
        self.sock.close()


def short(v):
    if isinstance(v, (bytes, bytearray)) and len(v) > 48:
        return f"<{len(v)} bytes {bytes(v[:16])!r}...>"
    if isinstance(v, tuple):
        return "(" + ", ".join(short(x) for x in v) + ")"
    return repr(v)


def chat(n, seed=0):
    """n bytes of JSON-like chat text."""
    out, i = [], 0
    size = 0
    while size < n:
        s = (f'{{"type":"message","room":"lobby","user":"user{(i + seed) % 13}",'
             f'"seq":{i},"text":"message {i * 7919 + seed} about the weather"}}\n')
        out.append(s)
        size += len(s)
        i += 1
    return "".join(out).encode()[:n]


def noise(n, seed=1):
    x, out = seed, bytearray(n)
    for i in range(n):
        x = (x * 1103515245 + 12345) & 0x7FFFFFFF
        out[i] = x >> 16 & 0xFF
    return bytes(out)


CASES, case = case_registry()


def echo(ws, opcode, data, fragments=1, want_compressed=None):
    ws.send_compressed(opcode, data, fragments)
    got = ws.read_message()
    kind = "text" if opcode == TEXT else "binary"
    if got[:2] != (kind, data):
        raise AssertionError(f"echo of {len(data)} bytes: got {short(got)}")
    if want_compressed is not None and got[2] != want_compressed:
        raise AssertionError(f"{len(data)} bytes: compressed {got[2]}, want {want_compressed}")
    return got


# ---- 1. negotiation (RFC 7692 5, 7.1) ---------------------------------------------------------

SHARED = "permessage-deflate; server_no_context_takeover; client_no_context_takeover"
NEGOTIATION = [
    # (path, offer, expected answer or None when declined)
    ("/echo/off", "permessage-deflate", None),
    ("/echo/shared", None, None),
    ("/echo/shared", "permessage-deflate", SHARED),
    ("/echo/true", "permessage-deflate; client_max_window_bits", SHARED),
    ("/echo/shared", "permessage-deflate; server_max_window_bits=10",
     SHARED + "; server_max_window_bits=10"),
    ("/echo/default", "permessage-deflate; client_max_window_bits", "permessage-deflate"),
    ("/echo/default", "permessage-deflate; server_no_context_takeover",
     "permessage-deflate; server_no_context_takeover"),
    ("/echo/default", "permessage-deflate; client_no_context_takeover", "permessage-deflate"),
    ("/echo/default", "permessage-deflate; server_max_window_bits=\"12\"",
     "permessage-deflate; server_max_window_bits=12"),
    ("/echo/small", "permessage-deflate; client_max_window_bits",
     "permessage-deflate; server_max_window_bits=11; client_max_window_bits=11"),
    ("/echo/small", "permessage-deflate",
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"),
    ("/echo/app", "permessage-deflate",
     "permessage-deflate; client_no_context_takeover; server_max_window_bits=11"),
    ("/echo/small", "permessage-deflate; client_max_window_bits=9; server_max_window_bits=9",
     "permessage-deflate; server_max_window_bits=9; client_max_window_bits=9"),
    ("/echo/default", "x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=9",
     "permessage-deflate; server_max_window_bits=9"),
    ("/echo/default", ["permessage-deflate; mystery", "permessage-deflate; server_max_window_bits=14"],
     "permessage-deflate; server_max_window_bits=14"),
    ("/echo/default", "permessage-deflate; server_max_window_bits=8",
     "permessage-deflate; server_max_window_bits=8"),
    ("/echo/default", "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
     None),
    ("/echo/default", "permessage-deflate; server_max_window_bits", None),
    ("/echo/default", "permessage-deflate; server_max_window_bits=16", None),
    ("/echo/default", "permessage-deflate; client_max_window_bits=08", None),
    ("/echo/default", "permessage-deflate; client_no_context_takeover=yes", None),
    ("/echo/default", "permessage-deflate; server_max_window_bits=\"9", None),
    ("/echo/default", "foo, bar; baz", None),
]

for i, (path, offer, answer) in enumerate(NEGOTIATION):
    @case(f"negotiation {i}: {path} offer {offer!r}")
    def _(port, path=path, offer=offer, answer=answer):
        ws = WSZ(port, path, offer)
        if ws.ext != answer:
            raise AssertionError(f"answer {ws.ext!r}, want {answer!r}")
        # Whatever was agreed, messages flow (compressed only when agreed).
        data = chat(3000)
        if ws.ext:
            echo(ws, TEXT, data, want_compressed="server_max_window_bits=8" not in ws.ext)
        else:
            ws.send(frame(TEXT, data))
            got = ws.read_message()
            assert got[:3] == ("text", data, False), short(got)
        ws.finish()


# ---- 2. compressed messages: sizes, fragments, presets (Autobahn 12.x, 13.x) -----------------

SIZES = [0, 1, 16, 64, 125, 126, 127, 1000, 4096, 65535, 65536, 65537, 262144, MIB]
OFFERS = {
    # name: (path, offer): each parameter combination a client can offer, per preset
    "shared": ("/echo/shared", "permessage-deflate"),
    "shared+cmwb": ("/echo/shared", "permessage-deflate; client_max_window_bits"),
    "small": ("/echo/small", "permessage-deflate; client_max_window_bits"),
    "small-no-cmwb": ("/echo/small", "permessage-deflate"),
    "small+smwb9": ("/echo/small", "permessage-deflate; server_max_window_bits=9; "
                    "client_max_window_bits=9"),
    "default": ("/echo/default", "permessage-deflate"),
    "default+snct": ("/echo/default", "permessage-deflate; server_no_context_takeover"),
    "default+cnct": ("/echo/default", "permessage-deflate; client_no_context_takeover"),
    "default+both": ("/echo/default", "permessage-deflate; server_no_context_takeover; "
                     "client_no_context_takeover"),
    "default+smwb9": ("/echo/default", "permessage-deflate; server_max_window_bits=9"),
    "default+smwb12+cmwb10": ("/echo/default", "permessage-deflate; server_max_window_bits=12; "
                              "client_max_window_bits=10"),
}

for name, (path, offer) in OFFERS.items():
    @case(f"messages: {name}: text of every size, one frame, one connection")
    def _(port, path=path, offer=offer):
        ws = WSZ(port, path, offer)
        assert ws.ext, "not negotiated"
        for n in SIZES:
            # Below the threshold (64) the answer is plain; above, compressed.
            echo(ws, TEXT, chat(n, n), want_compressed=n >= 64)
        ws.finish()

    @case(f"messages: {name}: binary in fragments")
    def _(port, path=path, offer=offer):
        ws = WSZ(port, path, offer)
        for n, frags in ((100, 2), (5000, 3), (70000, 7), (300000, 50)):
            echo(ws, BINARY, chat(n, 3) + noise(200), fragments=frags)
        ws.finish()


@case("messages: incompressible binary is sent plain, also with context takeover")
def _(port):
    for path in ("/echo/shared", "/echo/default"):
        ws = WSZ(port, path, "permessage-deflate")
        echo(ws, BINARY, noise(5000), want_compressed=False)
        # The context stays in step afterwards.
        for i in range(3):
            echo(ws, TEXT, chat(500, i), want_compressed=True)
        ws.finish()


@case("messages: threshold 0 compresses short messages; 2000 keeps 1000 bytes plain")
def _(port):
    ws = WSZ(port, "/echo/default/0", "permessage-deflate")
    echo(ws, TEXT, b"a" * 20, want_compressed=True)
    ws.send_compressed(TEXT, b"")  # RFC 7692 7.2.3.6: one 0x00 byte
    got = ws.read_message()
    assert got[:2] == ("text", b""), short(got)
    echo(ws, TEXT, b"a" * 20, want_compressed=True)
    ws.finish()
    ws = WSZ(port, "/echo/default/2000", "permessage-deflate")
    echo(ws, TEXT, chat(1000), want_compressed=False)
    echo(ws, TEXT, chat(3000), want_compressed=True)
    ws.finish()


@case("messages: uncompressed messages mix with compressed ones")
def _(port):
    ws = WSZ(port, "/echo/default", "permessage-deflate")
    for i in range(4):
        ws.send(frame(TEXT, chat(300, i)))
        got = ws.read_message()
        assert got[:2] == ("text", chat(300, i)), short(got)
        echo(ws, TEXT, chat(400, i))
    # A plain fragmented message between compressed ones, with a ping inside.
    ws.send(frame(TEXT, b"abc", fin=False) + frame(PING, b"p") + frame(CONT, b"def"))
    got = ws.read_message()
    assert got == ("pong", b"p"), short(got)
    got = ws.read_message()
    assert got[:3] == ("text", b"abcdef", False), short(got)
    echo(ws, TEXT, chat(400, 9), want_compressed=True)
    ws.finish()


@case("context takeover: client context kept across 50 messages (default, small)")
def _(port):
    for path, offer in (("/echo/default", "permessage-deflate"),
                        ("/echo/small", "permessage-deflate; client_max_window_bits")):
        ws = WSZ(port, path, offer)
        assert not ws.client_reset
        for i in range(50):
            echo(ws, TEXT, chat(200 + i, i % 3), fragments=1 + i % 3)
        ws.finish()


@case("context takeover: the server's repeats cost little; without it, they cost the same")
def _(port):
    msg = chat(400)
    for path, offer, takeover in (("/echo/default", "permessage-deflate", True),
                                  ("/echo/small", "permessage-deflate; client_max_window_bits",
                                   True),
                                  ("/echo/shared", "permessage-deflate", False),
                                  ("/echo/default", "permessage-deflate; "
                                   "server_no_context_takeover", False)):
        ws = WSZ(port, path, offer)
        sizes = [echo(ws, TEXT, msg, want_compressed=True)[3] for _ in range(3)]
        if takeover and not sizes[1] < sizes[0] / 3:
            raise AssertionError(f"{path}: sizes {sizes} with context takeover")
        if not takeover and len(set(sizes)) != 1:
            raise AssertionError(f"{path}: sizes {sizes} without context takeover")
        ws.finish()


@case("window bits: server_max_window_bits=9 keeps every back-reference within 512 bytes")
def _(port):
    # Repeats 600 bytes apart: a window over 512 would reach them; zlib with -9 rejects that.
    unit = chat(600, 7)
    ws = WSZ(port, "/echo/default", "permessage-deflate; server_max_window_bits=9")
    for _ in range(5):
        echo(ws, TEXT, unit * 20, want_compressed=True)
    ws.finish()


@case("window bits: server_max_window_bits=8 is accepted and answered uncompressed")
def _(port):
    ws = WSZ(port, "/echo/default", "permessage-deflate; server_max_window_bits=8")
    assert ws.params.get("server_max_window_bits") == "8"
    for n in (100, 10000):
        echo(ws, TEXT, chat(n), want_compressed=False)
    ws.finish()


# ---- 3. publish -------------------------------------------------------------------------------

@case("publish: compressed once for subscribers without context takeover, per connection else")
def _(port):
    a = WSZ(port, "/room/shared", "permessage-deflate")
    b = WSZ(port, "/room/shared", "permessage-deflate")
    c = WSZ(port, "/room/default", "permessage-deflate")
    d = WSZ(port, "/room/off", "permessage-deflate")
    time.sleep(0.2)  # every open handler ran (subscribed)
    msg = chat(2000)
    for i in range(3):
        a.send_compressed(TEXT, msg)
        got = [w.read_message() for w in (a, b, c, d)]
        for g in got:
            assert g[:2] == ("text", msg), short(g)
        assert got[0][2] and got[1][2] and got[2][2] and not got[3][2], short(got)
        assert got[0][3] == got[1][3], "shared subscribers got different bytes"
        if i > 0:
            assert got[2][3] < got[0][3], "context takeover made no difference"
    for w in (a, b, c, d):
        w.finish()


# ---- 4. failures --------------------------------------------------------------------------------

@case("rsv: RSV1 without the extension closes 1002")
def _(port):
    for path, offer in (("/echo/off", "permessage-deflate"), ("/echo/default", None),
                        ("/echo/default", "permessage-deflate; server_max_window_bits=7")):
        ws = WSZ(port, path, offer)
        assert ws.ext is None
        ws.send(frame(TEXT, zlib.compress(b"hello")[2:-4], rsv=4))
        ws.expect_close(1002)


@case("rsv: RSV1 on a continuation frame closes 1002")
def _(port):
    ws = WSZ(port, "/echo/default", "permessage-deflate")
    z = ws.compress(chat(1000))
    ws.send(frame(TEXT, z[:10], fin=False, rsv=4) + frame(CONT, z[10:], rsv=4))
    ws.expect_close(1002)


@case("rsv: RSV1 on ping, pong and close closes 1002")
def _(port):
    for op in (PING, 0xA, CLOSE):
        ws = WSZ(port, "/echo/shared", "permessage-deflate")
        ws.send(frame(op, b"", rsv=4))
        ws.expect_close(1002)


@case("rsv: RSV2 and RSV3 close 1002 with the extension too")
def _(port):
    for rsv in (1, 2, 6):
        ws = WSZ(port, "/echo/default", "permessage-deflate")
        ws.send(frame(TEXT, b"x", rsv=rsv))
        ws.expect_close(1002)


@case("rsv: a ping between compressed fragments is answered; the message arrives whole")
def _(port):
    ws = WSZ(port, "/echo/default", "permessage-deflate")
    data = chat(5000)
    z = ws.compress(data)
    ws.send(frame(TEXT, z[:100], fin=False, rsv=4) + frame(PING, b"hi") + frame(CONT, z[100:]))
    got = ws.read_message()
    assert got == ("pong", b"hi"), short(got)
    got = ws.read_message()
    assert got[:2] == ("text", data), short(got)
    ws.finish()


@case("corrupt: invalid compressed data closes 1007")
def _(port):
    ws = WSZ(port, "/echo/default", "permessage-deflate")
    ws.send(frame(BINARY, b"\xff\xff\xff\xff", rsv=4))
    ws.expect_close(1007)


@case("utf8: invalid UTF-8 once inflated closes 1007, also split across fragments")
def _(port):
    for frags in (1, 3):
        ws = WSZ(port, "/echo/shared", "permessage-deflate")
        ws.send_compressed(TEXT, chat(3000) + b"\xc3\x28" + chat(3000), fragments=frags)
        ws.expect_close(1007)
    ws = WSZ(port, "/echo/default", "permessage-deflate")
    ws.send_compressed(TEXT, chat(100) + b"\xe2\x82")  # ends inside a code point
    ws.expect_close(1007)


@case("utf8: a valid message delivered before a bad one fails")
def _(port):
    ws = WSZ(port, "/echo/default", "permessage-deflate")
    good = "grüße 😀 ".encode() * 50
    ws.send_compressed(TEXT, good)
    ws.send_compressed(TEXT, b"\xff")
    got = ws.read_message()
    assert got[:2] == ("text", good), short(got)
    ws.expect_close(1007)


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


@case("zip bomb: 64 MiB of zeros in 64 KiB closes 1009 (1008 in 8 fragments); memory stays flat")
def _(port):
    global SERVER
    other = WSZ(port, "/echo/default", "permessage-deflate")
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    bomb = z.compress(bytes(64 * MIB)) + z.flush(zlib.Z_SYNC_FLUSH)
    bomb = bomb[:-4]
    before = rss_kib(SERVER.proc.pid)
    for frags in (1, 8):
        for path in ("/echo/shared", "/echo/default"):
            ws = WSZ(port, path, "permessage-deflate")
            ws.send(b"".join(frame(BINARY if i == 0 else CONT, bomb[i * len(bomb) // frags:
                                                              (i + 1) * len(bomb) // frags],
                                   fin=i == frags - 1, rsv=4 if i == 0 else 0)
                             for i in range(frags)))
            # Whole, the bomb earns (max_inflate_ratio 100 x 64 KiB) more than the message
            # limit: 1009. An eighth of it earns less, and passes that bound first: 1008.
            ws.expect_close(1009 if frags == 1 else 1008)
    grew = rss_kib(SERVER.proc.pid) - before
    # The limit is 1 MiB; a server that inflated the bomb would have grown by 64 MiB.
    if grew > 16 * 1024:
        raise AssertionError(f"server RSS grew by {grew} KiB")
    echo(other, TEXT, chat(1000))
    other.finish()


@case("limits: a compressed message inflating to exactly 1 MiB passes; one byte more is 1009")
def _(port):
    ws = WSZ(port, "/echo/default", "permessage-deflate")
    data = chat(MIB)
    echo(ws, BINARY, data, fragments=4)
    ws.finish()
    ws = WSZ(port, "/echo/default", "permessage-deflate")
    ws.send_compressed(BINARY, data + b"x", fragments=4)
    ws.expect_close(1009)


@case("options: a bad compression value is an app error (500, logged); the server goes on")
def _(port):
    global SERVER
    for n in (1, 2, 3):
        s = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        s.sendall(f"GET /bad/{n} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                  "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                  "Sec-WebSocket-Version: 13\r\nSec-WebSocket-Extensions: permessage-deflate"
                  "\r\n\r\n".encode())
        head = s.recv(4096).decode("latin-1")
        s.close()
        assert head.startswith("HTTP/1.1 500 "), head
    want = 'option compression must be false, true, "shared", "small" or "default"'
    deadline = time.monotonic() + TIMEOUT
    while SERVER.stderr().count(want) < 3:
        if time.monotonic() > deadline:
            raise AssertionError(f"log lacks {want!r}: {SERVER.stderr()[-1000:]}")
        time.sleep(0.05)
    ws = WSZ(port, "/echo/shared", "permessage-deflate")
    echo(ws, TEXT, chat(100))
    ws.finish()


SERVER = None


def main():
    global SERVER
    if missing_bin():
        return 1
    srv = Server(APP)
    SERVER = srv
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
