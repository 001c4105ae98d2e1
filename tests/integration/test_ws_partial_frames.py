#!/usr/bin/env python3
"""WebSocket frames and messages that span reads, around the connection's timer.

The state of a frame or message left unfinished at the end of a read is kept between reads and
let go by the connection's timer once the connection is between messages again. One client,
against an echo app with a short ping interval (0.2 s):
- a binary message whose frame arrives in three pieces (part of the header, part of the
  payload, the rest), a moment apart (were they to arrive together, the test would still pass,
  covering less);
- a text message in two fragments, each in two pieces, the second fragment sent once a ping
  round trip shows the server read the first;
- a ping split in two pieces, answered with the same payload;
- between the rounds a pause of 0.5 s, in which the server's timer runs with no message in
  progress (it pings after 0.2 s of quiet; its pings are answered whenever they come);
three rounds, then a clean close. Every echo is checked byte for byte; the server exits
cleanly (under AddressSanitizer: no leak, no use after free). Waits are bounded, never timed.
"""
import os
import struct
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import run_app_cases, ws_frame, ws_read_frame, ws_upgrade  # noqa: E402

APP = """
local sy = require "switchyard"
local handlers = {
  message = function(ws, data, binary) ws:send(data, binary) end,
}
return {
  upgrade = function(req)
    return sy.accept("websocket", handlers, { ping_interval = 0.2 })
  end,
}
"""


def expect(s, opcode, payload, what):
    """Reads frames until one that is not the server's ping; it must be (opcode, payload)."""
    while True:
        op, fin, data = ws_read_frame(s)
        if op == 0x9:
            s.sendall(ws_frame(0xA, data))
            continue
        if (op, fin, data) != (opcode, True, payload):
            raise RuntimeError(f"{what}: got opcode {op} fin {fin} {len(data)} bytes")
        return


def pause(s):
    """Quiet for 0.5 s: the server's timer runs between messages (a ping follows, answered by
    the next expect)."""
    time.sleep(0.5)


def sync(s, tag):
    """A ping round trip: once its pong is back, the server has read everything sent before."""
    s.sendall(ws_frame(0x9, tag))
    expect(s, 0xA, tag, "pong")


def one_round(s, n):
    binary = os.urandom(3000)
    f = ws_frame(0x2, binary)
    for piece in (f[:3], f[3:1500], f[1500:]):
        s.sendall(piece)
        time.sleep(0.05)
    expect(s, 0x2, binary, "binary message in pieces")

    text = ("é" * 700).encode()
    a, b = text[:701], text[701:]  # the split falls inside a two-byte character
    for part, fin, opcode in ((a, False, 0x1), (b, True, 0x0)):
        f = ws_frame(opcode, part, fin)
        s.sendall(f[:5])
        time.sleep(0.05)
        s.sendall(f[5:])
        if not fin:
            sync(s, b"t%d" % n)
    expect(s, 0x1, text, "text message in fragments and pieces")

    f = ws_frame(0x9, b"split ping")
    s.sendall(f[:3])
    time.sleep(0.05)
    s.sendall(f[3:])
    expect(s, 0xA, b"split ping", "pong to a split ping")


def spanning_reads(srv):
    s = ws_upgrade(srv.port)
    for n in range(3):
        one_round(s, n)
        pause(s)
    s.sendall(ws_frame(0x8, struct.pack("!H", 1000)))
    op, _, data = ws_read_frame(s)
    while op == 0x9:
        op, _, data = ws_read_frame(s)
    if op != 0x8 or data[:2] != struct.pack("!H", 1000):
        raise RuntimeError(f"close: got opcode {op} {data!r}")
    s.close()


def main():
    return run_app_cases(APP, [
        ("frames and messages spanning reads, with the timer between them", spanning_reads),
    ])


if __name__ == "__main__":
    sys.exit(main())
