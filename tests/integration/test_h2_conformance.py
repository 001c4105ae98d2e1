#!/usr/bin/env python3
"""tests/integration/test_h2_conformance.py: HTTP/2 conformance on the prior-knowledge port.

Raw frames over a socket (h2frames.py, HPACK from python3-hpack), one case per requirement,
grouped and numbered like h2spec's sections of RFC 7540/9113: 3.5 preface, 4 frame format,
size and header compression, HPACK decoding errors (RFC 7541), 5.1 stream states and
identifiers, 5.1.2 concurrency, 5.3 priority, 5.4 error handling, 5.5 extensions, 6.x each frame
type, 8.1 HTTP messages. Every
case checks the server's answer on the wire: a connection error is a GOAWAY with the expected
code (or a close), a stream error an RST_STREAM or GOAWAY with the expected code (or a close),
and "ignored" means the connection still answers a PING afterwards.
Run from the repo root with SWITCHYARD_BIN set. Prints "ok - NAME" / "not ok - NAME" per case
and a final "N passed, N failed" line.
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
from h2frames import frame  # noqa: E402

APP = os.path.join("tests", "integration", "h2_app.lua")
PORT = None
CASES = []


def case(section, desc):
    def wrap(fn):
        CASES.append((f"{section} {desc}", fn))
        return fn
    return wrap


class Fail(AssertionError):
    pass


def handshake(*pairs):
    """Preface + SETTINGS; waits for the server's SETTINGS and the ACK of ours."""
    c = F.Conn(PORT)
    c.start(*pairs)
    got_settings = got_ack = False
    deadline = time.monotonic() + TIMEOUT
    while not (got_settings and got_ack):
        f = c.frame(max(0.01, deadline - time.monotonic()))
        if f is None:
            raise Fail("no SETTINGS exchange")
        if f.type == F.SETTINGS and f.flags & F.ACK:
            got_ack = True
        elif f.type == F.SETTINGS:
            got_settings = True
            c.send(F.settings(ack=True))
    return c


def hdrs(path="/", method="GET", extra=()):
    return F.request_headers(path, method, extra)


def connection_error(c, *codes):
    """GOAWAY with one of codes, or the connection closed."""
    seen, f = c.frames_until(lambda f: f.type == F.GOAWAY)
    if f is not None:
        if f.error_code() not in codes:
            raise Fail(f"GOAWAY code {f.error_code()}, expected {codes}; {seen}")
        return
    if not c.closed:
        raise Fail(f"no GOAWAY and no close; saw {seen}")


def stream_error(c, *codes):
    seen, f = c.frames_until(lambda f: f.type in (F.GOAWAY, F.RST_STREAM))
    if f is not None:
        if f.error_code() not in codes:
            raise Fail(f"{f} code {f.error_code()}, expected {codes}; {seen}")
        return
    if not c.closed:
        raise Fail(f"no RST_STREAM, GOAWAY or close; saw {seen}")


def alive(c, payload=b"h2check!"):
    """The connection still works: a PING is answered with the same payload."""
    c.send(frame(F.PING, 0, 0, payload))
    seen, f = c.frames_until(lambda f: f.type == F.PING and f.flags & F.ACK)
    if f is None or f.payload != payload:
        raise Fail(f"no PING ACK; saw {seen}")
    for g in seen:
        if g.type in (F.GOAWAY, F.RST_STREAM):
            raise Fail(f"unexpected {g}")


def response(c, stream, status="200"):
    h, body, seen = c.response(stream)
    if not h or h.get(":status") != status:
        raise Fail(f"expected a {status} response on stream {stream}; saw {seen}")
    return h, body


# ---- 3.5 HTTP/2 Connection Preface --------------------------------------------------------------

@case("3.5/1", "the server's first frame is SETTINGS")
def _(c0):
    c = F.Conn(PORT)
    c.start()
    f = c.frame()
    if not f or f.type != F.SETTINGS or f.flags & F.ACK:
        raise Fail(f"first frame {f}")


@case("3.5/2", "an invalid preface after 'PRI * HTTP/2.0' closes without an answer")
def _(c0):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
    s.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\nXX\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    if data:
        raise Fail(f"got {data!r}")


@case("3.5/2b", "INVALID CONNECTION PREFACE is a malformed HTTP/1.1 request: 400, close (README)")
def _(c0):
    s = socket.create_connection(("127.0.0.1", PORT), timeout=TIMEOUT)
    s.sendall(b"INVALID CONNECTION PREFACE\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    if not data.startswith(b"HTTP/1.1 400 "):
        raise Fail(f"got {data!r}")


# ---- 4 HTTP Frames --------------------------------------------------------------------------------

@case("4.1/1", "a frame of unknown type is ignored")
def _(c):
    c.send(frame(0x16, 0, 0, b"unknown"))
    alive(c)


@case("4.1/2", "undefined flags are ignored")
def _(c):
    c.send(frame(F.PING, 0x16, 0, b"12345678"))
    seen, f = c.frames_until(lambda f: f.type == F.PING)
    if not f or not f.flags & F.ACK or f.payload != b"12345678":
        raise Fail(f"{seen}")


@case("4.1/3", "the reserved bit of the stream id is ignored")
def _(c):
    c.send(frame(F.PING, 0, 0x80000000, b"12345678"))
    seen, f = c.frames_until(lambda f: f.type == F.PING)
    if not f or not f.flags & F.ACK:
        raise Fail(f"{seen}")


@case("4.2/1", "a DATA frame of 2^14 octets is accepted")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(frame(F.DATA, F.END_STREAM, 1, b"x" * 16384))
    _, body = response(c, 1)
    if body != b"x" * 16384:
        raise Fail(f"echo of {len(body)} bytes")


@case("4.2/2", "a DATA frame over SETTINGS_MAX_FRAME_SIZE: FRAME_SIZE_ERROR")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(frame(F.DATA, F.END_STREAM, 1, b"x" * 16385))
    stream_error(c, F.FRAME_SIZE_ERROR)


@case("4.2/3", "a HEADERS frame over SETTINGS_MAX_FRAME_SIZE: connection FRAME_SIZE_ERROR")
def _(c):
    block = c.enc.encode(hdrs("/", extra=[("x-big", "a" * 17000)]), huffman=False)
    c.send(frame(F.HEADERS, F.END_STREAM | F.END_HEADERS, 1, block))
    connection_error(c, F.FRAME_SIZE_ERROR)


@case("4.3/1", "an invalid header block fragment: COMPRESSION_ERROR")
def _(c):
    # Literal with incremental indexing, index 0 name (new name) of length 0x7f... cut.
    c.send(frame(F.HEADERS, F.END_STREAM | F.END_HEADERS, 1, b"\x00\x85\xf2\xb2\x4a\x87\xff\xff\xff\xfd\x25\x42\x7f"))
    connection_error(c, F.COMPRESSION_ERROR)


@case("4.3/2", "a PRIORITY frame inside a header block: PROTOCOL_ERROR")
def _(c):
    block = c.block(hdrs())
    c.send(frame(F.HEADERS, F.END_STREAM, 1, block))
    c.send(frame(F.PRIORITY, 0, 1, struct.pack(">IB", 0, 15)))
    c.send(frame(F.CONTINUATION, F.END_HEADERS, 1, b""))
    connection_error(c, F.PROTOCOL_ERROR)


@case("4.3/3", "HEADERS of another stream inside a header block: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.HEADERS, F.END_STREAM, 1, c.block(hdrs())))
    c.send(frame(F.HEADERS, F.END_STREAM | F.END_HEADERS, 3, c.block(hdrs())))
    connection_error(c, F.PROTOCOL_ERROR)


# ---- HPACK (RFC 7541) --------------------------------------------------------------------------

def hpack_error(block):
    def run(c):
        c.send(frame(F.HEADERS, F.END_STREAM | F.END_HEADERS, 1, block))
        connection_error(c, F.COMPRESSION_ERROR)
    return run


REQ = bytes([0x82, 0x86, 0x84, 0x41, 0x09]) + b"127.0.0.1"  # :method GET, http, /, :authority
HPACK = [
    ("hpack/2.3.3/1", "an indexed field with an index past both tables", REQ + bytes([0xff, 0x7f])),
    ("hpack/2.3.3/2", "a literal whose name index is past both tables", REQ + bytes([0x7f, 0x70, 0x01, 0x61])),
    ("hpack/4.2/1", "a table size update above SETTINGS_HEADER_TABLE_SIZE",
     bytes([0x3f, 0xe2, 0x1f]) + REQ),
    ("hpack/5.2/1", "a Huffman string that contains EOS",
     REQ + bytes([0x40, 0x85, 0xf2, 0xb2, 0x4a, 0x87, 0xff, 0x84, 0xff, 0xff, 0xff, 0xfd])),
    ("hpack/5.2/2", "Huffman padding longer than 7 bits",
     REQ + bytes([0x40, 0x85, 0xf2, 0xb2, 0x4a, 0x87, 0xff, 0x82, 0xff, 0xff])),
    ("hpack/6.3/1", "a table size update after a field",
     REQ + bytes([0x20])),
]
for _sec, _desc, _block in HPACK:
    case(_sec, _desc + ": COMPRESSION_ERROR")(hpack_error(_block))


# ---- 5.1 Stream States ----------------------------------------------------------------------------

@case("5.1/1", "idle: DATA: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.DATA, F.END_STREAM, 1, b"test"))
    connection_error(c, F.PROTOCOL_ERROR)


@case("5.1/2", "idle: RST_STREAM: PROTOCOL_ERROR")
def _(c):
    c.send(F.rst(1, F.CANCEL))
    connection_error(c, F.PROTOCOL_ERROR)


@case("5.1/3", "idle: WINDOW_UPDATE: PROTOCOL_ERROR")
def _(c):
    c.send(F.window_update(1, 100))
    connection_error(c, F.PROTOCOL_ERROR)


@case("5.1/4", "idle: CONTINUATION: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.CONTINUATION, F.END_HEADERS, 1, c.block(hdrs())))
    connection_error(c, F.PROTOCOL_ERROR)


@case("5.1/5", "half-closed (remote): DATA: STREAM_CLOSED")
def _(c):
    c.headers(1, hdrs("/hold/c515"))
    c.send(frame(F.DATA, F.END_STREAM, 1, b"test"))
    stream_error(c, F.STREAM_CLOSED)


@case("5.1/6", "half-closed (remote): HEADERS: STREAM_CLOSED")
def _(c):
    c.headers(1, hdrs("/hold/c516"))
    c.headers(1, hdrs("/hold/c516"))
    stream_error(c, F.STREAM_CLOSED)


@case("5.1/7", "half-closed (remote): CONTINUATION: STREAM_CLOSED or PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/hold/c517"))
    c.send(frame(F.CONTINUATION, F.END_HEADERS, 1, c.block(hdrs())))
    stream_error(c, F.STREAM_CLOSED, F.PROTOCOL_ERROR)


@case("5.1/8", "closed: DATA after RST_STREAM: STREAM_CLOSED")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(F.rst(1, F.CANCEL))
    c.send(frame(F.DATA, F.END_STREAM, 1, b"test"))
    stream_error(c, F.STREAM_CLOSED)


@case("5.1/9", "closed: HEADERS after RST_STREAM: STREAM_CLOSED")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(F.rst(1, F.CANCEL))
    c.headers(1, hdrs())
    stream_error(c, F.STREAM_CLOSED)


@case("5.1/10", "closed: CONTINUATION after RST_STREAM: STREAM_CLOSED or PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(F.rst(1, F.CANCEL))
    c.send(frame(F.CONTINUATION, F.END_HEADERS, 1, c.block(hdrs())))
    stream_error(c, F.STREAM_CLOSED, F.PROTOCOL_ERROR)


@case("5.1/11", "closed: DATA after END_STREAM both ways: STREAM_CLOSED")
def _(c):
    c.headers(1, hdrs())
    response(c, 1)
    c.send(frame(F.DATA, F.END_STREAM, 1, b"test"))
    stream_error(c, F.STREAM_CLOSED)


@case("5.1/12", "closed: HEADERS after END_STREAM both ways: STREAM_CLOSED")
def _(c):
    c.headers(1, hdrs())
    response(c, 1)
    c.headers(1, hdrs())
    connection_error(c, F.STREAM_CLOSED)


@case("5.1.1/1", "an even stream id from the client: PROTOCOL_ERROR")
def _(c):
    c.headers(2, hdrs())
    connection_error(c, F.PROTOCOL_ERROR)


@case("5.1.1/2", "a stream id lower than one used before: PROTOCOL_ERROR")
def _(c):
    c.headers(5, hdrs())
    response(c, 5)
    c.headers(3, hdrs())
    connection_error(c, F.PROTOCOL_ERROR)


@case("5.1.2/1", "more streams than SETTINGS_MAX_CONCURRENT_STREAMS: PROTOCOL_ERROR or REFUSED_STREAM")
def _(c):
    for i in range(101):
        c.headers(1 + 2 * i, hdrs("/echo", "POST"), end_stream=False)
    stream_error(c, F.PROTOCOL_ERROR, F.REFUSED_STREAM)


@case("5.1.2/2", "past the limit with answers held by a zero window: REFUSED_STREAM")
def _(c):
    # As h2spec does it: complete requests whose answers cannot leave (window 0) stay open.
    c.send(F.settings((4, 0)))
    for i in range(101):
        c.headers(1 + 2 * i, hdrs("/"))
    stream_error(c, F.PROTOCOL_ERROR, F.REFUSED_STREAM)


# ---- 5.3 Stream Priority, 5.4 Error Handling, 5.5 Extending HTTP/2 ------------------------------

@case("5.3.1/1", "HEADERS depending on its own stream: PROTOCOL_ERROR")
def _(c):
    block = struct.pack(">IB", 1, 15) + c.block(hdrs())
    c.send(frame(F.HEADERS, F.END_STREAM | F.END_HEADERS | F.PRIORITY_FLAG, 1, block))
    stream_error(c, F.PROTOCOL_ERROR)


@case("5.3.1/2", "PRIORITY depending on its own stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.PRIORITY, 0, 1, struct.pack(">IB", 1, 15)))
    stream_error(c, F.PROTOCOL_ERROR)


@case("5.4.1/1", "an invalid PING (stream 1): GOAWAY, then close")
def _(c):
    c.send(frame(F.PING, 0, 1, b"12345678"))
    connection_error(c, F.PROTOCOL_ERROR)
    if c.read_raw(1, timeout=TIMEOUT) is not None or not c.closed:
        raise Fail("still open after GOAWAY")


@case("5.4.1/2", "a connection error sends a GOAWAY naming the error")
def _(c):
    c.send(frame(F.PING, 0, 3, b"12345678"))
    seen, f = c.frames_until(lambda f: f.type == F.GOAWAY)
    if not f or f.error_code() != F.PROTOCOL_ERROR:
        raise Fail(f"{seen}")


@case("5.5/1", "an unknown extension frame is ignored")
def _(c):
    c.send(frame(0xff, 0, 0, b"\0" * 8))
    alive(c)


@case("5.5/2", "an unknown extension frame inside a header block: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.HEADERS, F.END_STREAM, 1, c.block(hdrs())))
    c.send(frame(0xff, 0, 1, b"\0" * 8))
    c.send(frame(F.CONTINUATION, F.END_HEADERS, 1, b""))
    connection_error(c, F.PROTOCOL_ERROR)


# ---- 6.1 DATA, 6.2 HEADERS, 6.3 PRIORITY, 6.4 RST_STREAM ------------------------------------------

@case("6.1/1", "DATA on stream 0: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.DATA, F.END_STREAM, 0, b"test"))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.1/2", "DATA on a half-closed (remote) stream: STREAM_CLOSED")
def _(c):
    c.headers(1, hdrs("/hold/c612"))
    c.send(frame(F.DATA, F.END_STREAM, 1, b"test"))
    stream_error(c, F.STREAM_CLOSED)


@case("6.1/3", "DATA with a pad length over the payload: PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(frame(F.DATA, F.END_STREAM | F.PADDED, 1, b"\x06test"))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.1/4", "padded DATA: the padding is not body")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(frame(F.DATA, F.END_STREAM | F.PADDED, 1, b"\x03test\0\0\0"))
    _, body = response(c, 1)
    if body != b"test":
        raise Fail(repr(body))


@case("6.2/1", "HEADERS without END_HEADERS then PRIORITY: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.HEADERS, F.END_STREAM, 1, c.block(hdrs())))
    c.send(frame(F.PRIORITY, 0, 1, struct.pack(">IB", 0, 15)))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.2/2", "HEADERS without END_HEADERS then DATA: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.HEADERS, 0, 1, c.block(hdrs("/echo", "POST"))))
    c.send(frame(F.DATA, F.END_STREAM, 1, b"test"))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.2/3", "HEADERS on stream 0: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.HEADERS, F.END_STREAM | F.END_HEADERS, 0, c.block(hdrs())))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.2/4", "HEADERS with a pad length over the payload: PROTOCOL_ERROR")
def _(c):
    block = c.block(hdrs())
    c.send(frame(F.HEADERS, F.END_STREAM | F.END_HEADERS | F.PADDED, 1,
                 bytes([len(block) + 1]) + block))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.3/1", "PRIORITY on stream 0: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.PRIORITY, 0, 0, struct.pack(">IB", 1, 15)))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.3/2", "PRIORITY of 4 octets: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(F.PRIORITY, 0, 1, struct.pack(">I", 0)))
    stream_error(c, F.FRAME_SIZE_ERROR)


@case("6.3/3", "PRIORITY on an idle stream is accepted")
def _(c):
    c.send(frame(F.PRIORITY, 0, 9, struct.pack(">IB", 0, 15)))
    alive(c)
    c.headers(1, hdrs())
    response(c, 1)


@case("6.4/1", "RST_STREAM on stream 0: PROTOCOL_ERROR")
def _(c):
    c.send(F.rst(0, F.CANCEL))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.4/2", "RST_STREAM on an idle stream: PROTOCOL_ERROR")
def _(c):
    c.send(F.rst(3, F.CANCEL))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.4/3", "RST_STREAM of 3 octets: FRAME_SIZE_ERROR")
def _(c):
    c.headers(1, hdrs("/hold/c643"))
    c.send(frame(F.RST_STREAM, 0, 1, b"\0\0\0"))
    connection_error(c, F.FRAME_SIZE_ERROR)


# ---- 6.5 SETTINGS -----------------------------------------------------------------------------------

@case("6.5/1", "SETTINGS ACK with a payload: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(F.SETTINGS, F.ACK, 0, struct.pack(">HI", 3, 100)))
    connection_error(c, F.FRAME_SIZE_ERROR)


@case("6.5/2", "SETTINGS on a stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.SETTINGS, 0, 1, struct.pack(">HI", 3, 100)))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.5/3", "SETTINGS whose length is not a multiple of 6: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(F.SETTINGS, 0, 0, b"\0\x03\0\0"))
    connection_error(c, F.FRAME_SIZE_ERROR)


@case("6.5.2/1", "SETTINGS_ENABLE_PUSH 2: PROTOCOL_ERROR")
def _(c):
    c.send(F.settings((2, 2)))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.5.2/2", "SETTINGS_INITIAL_WINDOW_SIZE 2^31: FLOW_CONTROL_ERROR")
def _(c):
    c.send(F.settings((4, 1 << 31)))
    connection_error(c, F.FLOW_CONTROL_ERROR)


@case("6.5.2/3", "SETTINGS_MAX_FRAME_SIZE 16383: PROTOCOL_ERROR")
def _(c):
    c.send(F.settings((5, 16383)))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.5.2/4", "SETTINGS_MAX_FRAME_SIZE 2^24: PROTOCOL_ERROR")
def _(c):
    c.send(F.settings((5, 1 << 24)))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.5.2/5", "an unknown setting is ignored (and ACKed)")
def _(c):
    c.send(F.settings((0xff, 1)))
    seen, f = c.frames_until(lambda f: f.type == F.SETTINGS and f.flags & F.ACK)
    if not f:
        raise Fail(f"{seen}")
    alive(c)


@case("6.5.3/1", "the last of several values of a setting wins")
def _(c):
    c.send(F.settings((4, 100), (4, 1)))
    c.frames_until(lambda f: f.type == F.SETTINGS and f.flags & F.ACK)
    c.headers(1, hdrs("/bytes?100"))
    seen, f = c.frames_until(lambda f: f.type == F.DATA)
    if not f or len(f.payload) != 1:
        raise Fail(f"{seen}")


@case("6.5.3/2", "SETTINGS is acknowledged")
def _(c):
    c.send(F.settings((3, 50)))
    seen, f = c.frames_until(lambda f: f.type == F.SETTINGS and f.flags & F.ACK)
    if not f or f.payload:
        raise Fail(f"{seen}")


# ---- 6.7 PING, 6.8 GOAWAY, 6.9 WINDOW_UPDATE ------------------------------------------------------

@case("6.7/1", "PING is answered with ACK and the same payload")
def _(c):
    alive(c, b"\x01\x02\x03\x04\x05\x06\x07\x08")


@case("6.7/2", "a PING with ACK is not answered")
def _(c):
    c.send(frame(F.PING, F.ACK, 0, b"unexpect"))
    alive(c, b"expected")


@case("6.7/3", "PING on a stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.PING, 0, 1, b"12345678"))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.7/4", "PING of 6 octets: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(F.PING, 0, 0, b"123456"))
    connection_error(c, F.FRAME_SIZE_ERROR)


@case("6.8/1", "GOAWAY on a stream: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.GOAWAY, 0, 1, struct.pack(">II", 0, 0)))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.8/2", "after the client's GOAWAY, open streams finish and the server closes")
def _(c):
    c.headers(1, hdrs("/later?100"))
    c.send(frame(F.GOAWAY, 0, 0, struct.pack(">II", 0, 0)))
    response(c, 1)
    deadline = time.monotonic() + TIMEOUT
    while not c.closed and time.monotonic() < deadline:
        c.frame(0.2)
    if not c.closed:
        raise Fail("not closed")


@case("6.9/1", "WINDOW_UPDATE of 0 on the connection: PROTOCOL_ERROR")
def _(c):
    c.send(F.window_update(0, 0))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.9/2", "WINDOW_UPDATE of 0 on a stream: PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/hold/c692"))
    c.send(F.window_update(1, 0))
    stream_error(c, F.PROTOCOL_ERROR)


@case("6.9/3", "WINDOW_UPDATE of 3 octets: FRAME_SIZE_ERROR")
def _(c):
    c.send(frame(F.WINDOW_UPDATE, 0, 0, b"\0\0\x01"))
    connection_error(c, F.FRAME_SIZE_ERROR)


@case("6.9.1/1", "SETTINGS_INITIAL_WINDOW_SIZE 1: DATA of 1 octet")
def _(c):
    c.send(F.settings((4, 1)))
    c.headers(1, hdrs("/bytes?10"))
    seen, f = c.frames_until(lambda f: f.type == F.DATA)
    if not f or len(f.payload) != 1:
        raise Fail(f"{seen}")


@case("6.9.1/2", "connection window over 2^31-1: FLOW_CONTROL_ERROR")
def _(c):
    c.send(F.window_update(0, 2147483647))
    c.send(F.window_update(0, 2147483647))
    connection_error(c, F.FLOW_CONTROL_ERROR)


@case("6.9.1/3", "stream window over 2^31-1: FLOW_CONTROL_ERROR")
def _(c):
    c.headers(1, hdrs("/hold/c6913"))
    c.send(F.window_update(1, 2147483647))
    c.send(F.window_update(1, 2147483647))
    stream_error(c, F.FLOW_CONTROL_ERROR)


@case("6.9.2/1", "a new SETTINGS_INITIAL_WINDOW_SIZE applies to open streams")
def _(c):
    c.send(F.settings((4, 0)))
    c.headers(1, hdrs("/bytes?10"))
    seen, f = c.frames_until(lambda f: f.type == F.HEADERS and f.stream == 1)
    if not f:
        raise Fail(f"{seen}")
    c.send(F.settings((4, 1)))
    seen, f = c.frames_until(lambda f: f.type == F.DATA)
    if not f or len(f.payload) != 1:
        raise Fail(f"{seen}")


@case("6.9.2/2", "a window made negative by SETTINGS waits for WINDOW_UPDATE")
def _(c):
    c.send(F.settings((4, 3)))
    c.headers(1, hdrs("/bytes?10"))
    seen, f = c.frames_until(lambda f: f.type == F.DATA)
    if not f or len(f.payload) != 3:
        raise Fail(f"{seen}")
    c.send(F.settings((4, 2)))  # window 2 - 3 = -1
    c.send(F.window_update(1, 2))  # -1 + 2 = 1
    seen, f = c.frames_until(lambda f: f.type == F.DATA)
    if not f or len(f.payload) != 1:
        raise Fail(f"{seen}")


@case("6.9.2/3", "SETTINGS_INITIAL_WINDOW_SIZE over 2^31-1: FLOW_CONTROL_ERROR")
def _(c):
    c.send(F.settings((4, 2147483648)))
    connection_error(c, F.FLOW_CONTROL_ERROR)


# ---- 6.10 CONTINUATION ----------------------------------------------------------------------------

@case("6.10/1", "several CONTINUATION frames make one header block")
def _(c):
    block = c.block(hdrs(extra=[("x-a", "1"), ("x-b", "2")]))
    c.send(frame(F.HEADERS, F.END_STREAM, 1, block[:5]) + frame(F.CONTINUATION, 0, 1, block[5:10]) +
           frame(F.CONTINUATION, F.END_HEADERS, 1, block[10:]))
    response(c, 1)


@case("6.10/2", "CONTINUATION then a frame of another type: PROTOCOL_ERROR")
def _(c):
    block = c.block(hdrs())
    c.send(frame(F.HEADERS, F.END_STREAM, 1, block[:5]) + frame(F.CONTINUATION, 0, 1, block[5:]) +
           frame(F.DATA, 0, 1, b"test"))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.10/3", "CONTINUATION on stream 0: PROTOCOL_ERROR")
def _(c):
    block = c.block(hdrs())
    c.send(frame(F.HEADERS, F.END_STREAM, 1, block[:5]) + frame(F.CONTINUATION, F.END_HEADERS, 0, block[5:]))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.10/4", "CONTINUATION after a HEADERS with END_HEADERS: PROTOCOL_ERROR")
def _(c):
    c.send(frame(F.HEADERS, F.END_HEADERS, 1, c.block(hdrs("/echo", "POST"))))
    c.send(frame(F.CONTINUATION, F.END_HEADERS, 1, c.block([("x-a", "b")])))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.10/5", "CONTINUATION after a CONTINUATION with END_HEADERS: PROTOCOL_ERROR")
def _(c):
    block = c.block(hdrs("/echo", "POST"))
    c.send(frame(F.HEADERS, 0, 1, block[:5]) + frame(F.CONTINUATION, F.END_HEADERS, 1, block[5:]) +
           frame(F.CONTINUATION, F.END_HEADERS, 1, b""))
    connection_error(c, F.PROTOCOL_ERROR)


@case("6.10/6", "CONTINUATION after DATA: PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(frame(F.DATA, 0, 1, b"test") + frame(F.CONTINUATION, F.END_HEADERS, 1, c.block(hdrs())))
    connection_error(c, F.PROTOCOL_ERROR)


# ---- 8.1 HTTP Request/Response Exchange -----------------------------------------------------------

@case("8.1/1", "a second HEADERS without END_STREAM: PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.headers(1, [("x-trailer", "1")], end_stream=False)
    stream_error(c, F.PROTOCOL_ERROR)


@case("8.1/2", "trailers after the body are accepted")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(frame(F.DATA, 0, 1, b"body"))
    c.headers(1, [("x-trailer", "1")], end_stream=True)
    _, body = response(c, 1)
    if body != b"body":
        raise Fail(repr(body))


def malformed(extra_hs=None, hs=None):
    def run(c):
        c.headers(1, hs if hs is not None else hdrs(extra=extra_hs))
        stream_error(c, F.PROTOCOL_ERROR)
        # A malformed request is a stream error: the connection goes on.
        c.headers(3, hdrs())
        response(c, 3)
    return run


BASE = [(":method", "GET"), (":scheme", "http"), (":authority", "127.0.0.1"), (":path", "/")]
MALFORMED = [
    ("8.1.2/1", "an upper-case field name", dict(extra_hs=[("X-Upper", "1")])),
    ("8.1.2.1/1", "an unknown pseudo-header", dict(extra_hs=[(":foo", "1")])),
    ("8.1.2.1/2", "a response pseudo-header in a request", dict(extra_hs=[(":status", "200")])),
    ("8.1.2.1/3", "a pseudo-header after a regular field",
     dict(hs=BASE[:3] + [("x-a", "1"), (":path", "/")])),
    ("8.1.2.1/4", "a duplicate pseudo-header", dict(hs=BASE + [(":path", "/")])),
    ("8.1.2.2/1", "a connection-specific field", dict(extra_hs=[("connection", "keep-alive")])),
    ("8.1.2.2/2", "TE other than trailers", dict(extra_hs=[("te", "trailers, deflate")])),
    ("8.1.2.3/1", "an empty :path", dict(hs=BASE[:3] + [(":path", "")])),
    ("8.1.2.3/2", "no :method", dict(hs=BASE[1:])),
    ("8.1.2.3/3", "no :scheme", dict(hs=[BASE[0]] + BASE[2:])),
    ("8.1.2.3/4", "no :path", dict(hs=BASE[:3])),
    ("8.1.2.3/5", "a duplicate :method", dict(hs=BASE + [(":method", "GET")])),
    ("8.1.2.3/6", "a duplicate :scheme", dict(hs=BASE + [(":scheme", "http")])),
    ("8.1.2.3/7", "a duplicate :path", dict(hs=BASE + [(":path", "/x")])),
]
for _sec, _desc, _kw in MALFORMED:
    case(_sec, _desc + ": PROTOCOL_ERROR, the connection goes on")(malformed(**_kw))


@case("8.1.2.1/5", "a pseudo-header in trailers: PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/echo", "POST"), end_stream=False)
    c.send(frame(F.DATA, 0, 1, b"test"))
    c.headers(1, [(":method", "POST")], end_stream=True)
    stream_error(c, F.PROTOCOL_ERROR)


@case("8.1.2.6/1", "content-length above the DATA sent: PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/echo", "POST", [("content-length", "10")]), end_stream=False)
    c.send(frame(F.DATA, F.END_STREAM, 1, b"test"))
    stream_error(c, F.PROTOCOL_ERROR)


@case("8.1.2.6/2", "content-length below the DATA sent: PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/echo", "POST", [("content-length", "1")]), end_stream=False)
    c.send(frame(F.DATA, 0, 1, b"test") + frame(F.DATA, F.END_STREAM, 1, b"test"))
    stream_error(c, F.PROTOCOL_ERROR)


@case("8.1.2.6/3", "content-length equal to the DATA sent is served")
def _(c):
    c.headers(1, hdrs("/echo", "POST", [("content-length", "8")]), end_stream=False)
    c.send(frame(F.DATA, 0, 1, b"test") + frame(F.DATA, F.END_STREAM, 1, b"test"))
    _, body = response(c, 1)
    if body != b"testtest":
        raise Fail(repr(body))


@case("8.2/1", "PUSH_PROMISE from a client: PROTOCOL_ERROR")
def _(c):
    c.headers(1, hdrs("/hold/c821"))
    c.send(frame(F.PUSH_PROMISE, F.END_HEADERS, 1, struct.pack(">I", 2) + c.block(hdrs())))
    connection_error(c, F.PROTOCOL_ERROR)


@case("8.x/1", "requests on many streams of one connection are all served")
def _(c):
    want = set(range(1, 40, 2))
    for i in sorted(want):
        c.headers(i, hdrs(f"/n{i}"))
    statuses = {}
    ended = set()
    deadline = time.monotonic() + TIMEOUT
    while ended != want and time.monotonic() < deadline:
        f = c.frame(1)
        if f is None:
            break
        if f.type == F.HEADERS:
            statuses[f.stream] = dict(c.decode(f))[":status"]
        if f.type in (F.HEADERS, F.DATA) and f.flags & F.END_STREAM:
            ended.add(f.stream)
    if ended != want or set(statuses.values()) != {"200"}:
        raise Fail(f"ended {sorted(ended)} statuses {statuses}")


def main():
    global PORT
    if missing_bin():
        return 1
    srv = Server(APP)
    PORT = srv.port
    start_watchdog(srv, 240)
    passed = failed = 0
    for name, fn in CASES:
        c = None
        try:
            c = handshake()
            fn(c)
            passed += 1
            print(f"ok - {name}")
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"not ok - {name}")
            for line in traceback.format_exc().splitlines()[-4:]:
                print("#   " + line)
        finally:
            if c:
                c.close()
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
