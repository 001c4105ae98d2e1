"""tests/integration/h2frames.py: raw HTTP/2 frames over a socket for the h2 tests (not a test).

Frames are built and read by hand (RFC 9113 4.1) so the tests see exactly what the server sends;
HPACK comes from Debian's python3-hpack (a dependency of python3-h2).
"""
import base64
import socket
import struct
import time

import hpack

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, FLOW_CONTROL_ERROR, SETTINGS_TIMEOUT, STREAM_CLOSED, \
    FRAME_SIZE_ERROR, REFUSED_STREAM, CANCEL, COMPRESSION_ERROR = range(10)
NAMES = ["DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING",
         "GOAWAY", "WINDOW_UPDATE", "CONTINUATION"]


def frame(ftype, flags, stream, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags, stream & 0xFFFFFFFF) + payload


def settings(*pairs, ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0, b"".join(struct.pack(">HI", k, v) for k, v in pairs))


def settings_b64(*pairs):
    raw = b"".join(struct.pack(">HI", k, v) for k, v in pairs)
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def window_update(stream, inc):
    return frame(WINDOW_UPDATE, 0, stream, struct.pack(">I", inc))


def rst(stream, code):
    return frame(RST_STREAM, 0, stream, struct.pack(">I", code))


def request_headers(path="/", method="GET", extra=(), authority="127.0.0.1"):
    hs = [(":method", method), (":scheme", "http"), (":authority", authority), (":path", path)]
    return hs + list(extra)


class Frame:
    def __init__(self, ftype, flags, stream, payload):
        self.type, self.flags, self.stream, self.payload = ftype, flags, stream, payload

    def __repr__(self):
        name = NAMES[self.type] if self.type < len(NAMES) else str(self.type)
        extra = ""
        if self.type in (GOAWAY, RST_STREAM):
            extra = f" code={self.error_code()}"
        return f"<{name} flags=0x{self.flags:02x} stream={self.stream} len={len(self.payload)}{extra}>"

    def error_code(self):
        if self.type == RST_STREAM:
            return struct.unpack(">I", self.payload[:4])[0]
        if self.type == GOAWAY:
            return struct.unpack(">I", self.payload[4:8])[0]
        return None

    def last_stream(self):
        return struct.unpack(">I", self.payload[:4])[0] & 0x7FFFFFFF


class Conn:
    """One client connection speaking raw frames; every read is bounded."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.timeout = timeout
        self.closed = False

    def send(self, data):
        self.sock.sendall(data)

    def start(self, *pairs, preface=True):
        """Client preface + SETTINGS (pairs)."""
        self.send((PREFACE if preface else b"") + settings(*pairs))

    def headers(self, stream, hs, end_stream=True, flags=END_HEADERS):
        """HEADERS (+ CONTINUATION frames when the block is over 16384 bytes)."""
        block = self.enc.encode(hs)
        es = END_STREAM if end_stream else 0
        if len(block) <= 16384:
            self.send(frame(HEADERS, flags | es, stream, block))
            return
        parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
        out = frame(HEADERS, (flags & ~END_HEADERS) | es, stream, parts[0])
        for i, p in enumerate(parts[1:], 1):
            out += frame(CONTINUATION, END_HEADERS if i == len(parts) - 1 else 0, stream, p)
        self.send(out)

    def block(self, hs):
        return self.enc.encode(hs)

    def _fill(self, deadline):
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False
            except (ConnectionResetError, BrokenPipeError):
                chunk = b""
            if not chunk:
                self.closed = True
                return False
            self.buf += chunk
            return True

    def read_raw(self, n, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while len(self.buf) < n:
            if not self._fill(deadline):
                return None
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_until(self, marker, timeout=None):
        deadline = time.monotonic() + (timeout or self.timeout)
        while marker not in self.buf:
            if not self._fill(deadline):
                return None
        i = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:i], self.buf[i:]
        return out

    def frame(self, timeout=None):
        """Next frame, or None on timeout / close (self.closed tells which)."""
        head = self.read_raw(9, timeout)
        if head is None:
            return None
        n = head[0] << 16 | head[1] << 8 | head[2]
        payload = self.read_raw(n, timeout) if n else b""
        if payload is None:
            return None
        f = Frame(head[3], head[4], struct.unpack(">I", head[5:9])[0] & 0x7FFFFFFF, payload)
        return f

    def frames_until(self, pred, timeout=None):
        """Reads frames until pred(frame) is true; returns (list, matching frame or None)."""
        deadline = time.monotonic() + (timeout or self.timeout)
        seen = []
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return seen, None
            f = self.frame(left)
            if f is None:
                return seen, None
            seen.append(f)
            if pred(f):
                return seen, f

    def decode(self, f):
        """Header list of a HEADERS frame (END_HEADERS expected), names and values as str."""
        payload = f.payload
        if f.flags & PADDED:
            pad = payload[0]
            payload = payload[1:len(payload) - pad]
        if f.flags & PRIORITY_FLAG:
            payload = payload[5:]
        return [(k if isinstance(k, str) else k.decode(), v if isinstance(v, str) else v.decode())
                for k, v in self.dec.decode(payload)]

    def response(self, stream, timeout=None, window=True):
        """Reads until stream ends: returns (headers dict, body bytes, frames seen). Sends
        WINDOW_UPDATEs for the data it reads when window is true; ACKs SETTINGS."""
        deadline = time.monotonic() + (timeout or self.timeout)
        hdrs, body, seen = None, bytearray(), []  # bytearray: appending stays linear
        while True:
            left = deadline - time.monotonic()
            f = self.frame(left) if left > 0 else None
            if f is None:
                return hdrs, bytes(body), seen
            seen.append(f)
            if f.type == SETTINGS and not f.flags & ACK:
                self.send(settings(ack=True))
            if f.stream != stream:
                if f.type == HEADERS:
                    self.decode(f)  # keep the HPACK state in step
                continue
            if f.type == HEADERS:
                hdrs = dict(self.decode(f))
            elif f.type == DATA:
                data = f.payload
                if f.flags & PADDED:
                    data = data[1:len(data) - data[0]]
                body += data
                if window and f.payload:
                    self.send(window_update(0, len(f.payload)) +
                              window_update(stream, len(f.payload)))
            elif f.type == RST_STREAM:
                return hdrs, bytes(body), seen
            if f.flags & END_STREAM:
                return hdrs, bytes(body), seen

    def ping(self, payload=b"syncsync", timeout=None):
        """A PING round trip: once its ACK is back, the server has processed every frame sent
        before it. Returns the frames seen meanwhile (HEADERS decoded to keep HPACK in step);
        raises AssertionError when no ACK comes."""
        self.send(frame(PING, 0, 0, payload))
        seen, f = self.frames_until(lambda f: f.type == PING and f.flags & ACK and
                                    f.payload == payload, timeout)
        for g in seen:
            if g.type == HEADERS:
                self.decode(g)
        assert f is not None, f"no PING ACK; saw {seen}"
        return seen[:-1]

    def goaway_or_close(self, timeout=None):
        """Reads until GOAWAY or close: returns the GOAWAY frame, "closed" or None (timeout)."""
        seen, f = self.frames_until(lambda f: f.type == GOAWAY, timeout)
        if f:
            return f
        return "closed" if self.closed else None

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
