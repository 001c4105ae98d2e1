#!/usr/bin/env python3
"""The two ways a WebSocket message reaches its handler give the same results.

A read that carries one message of up to 1 KiB starts the handler's task on the handler itself;
a read with more messages, a larger message, a handler set whose `message` comes through an
`__index` of the app's, and the server's first message go through the batch path. A raw client
(tests/integration/sytest.py) controls what one read carries: each frame alone, or several
frames in one write. For each case the answers are checked byte for byte and in order:
- a plain set: 1 B, 1,024 B (the largest lone message) and 1,025 B, text (with multi-byte
  characters) and binary, alone and in one write;
- a set whose `message` is found through `__index`;
- a named set (`sy.accept("websocket", "named")`);
- a handler that replaces itself: the replacement handles the next message;
- a handler that waits (`sy.sleep`): messages that arrive meanwhile are held and answered after;
- a handler that raises: that connection is closed with 1011, another one is served;
- a handler that drops its text argument and makes garbage: `ws:send` of the text it received
  is still sent as that text;
- a handler that sends three replies to a lone message (the first goes straight to the socket
  and is larger than it takes at once, the rest are queued), and a ping in the same write as a
  message (the pong comes first).
The server exits cleanly at the end (under AddressSanitizer: no leak, no use after free).
"""
import os
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import run_app_cases, ws_frame, ws_read_frame, ws_upgrade  # noqa: E402

APP = r"""
local sy = require "switchyard"
local base = { message = function(ws, data, binary) ws:send("meta:" .. data, binary) end }
local swap = {}
function swap.message(ws, data)
  ws:send("first:" .. data)
  swap.message = function(ws2, d2) ws2:send("second:" .. d2) end
end
local sets = {
  ["/echo"] = { message = function(ws, data, binary) ws:send(data, binary) end },
  ["/meta"] = setmetatable({}, { __index = base }),
  ["/swap"] = swap,
  ["/wait"] = { message = function(ws, data) sy.sleep(0.05) ws:send("waited:" .. data) end },
  ["/fail"] = { message = function(ws, data)
    if data == "boom" then error("boom on purpose") end
    ws:send(data)
  end },
  ["/replies"] = { message = function(ws, data)
    ws:send(string.rep("L", 24 * 1024 * 1024) .. data)
    ws:send("r2:" .. data)
    ws:send("r3:" .. data)
  end },
  ["/drop"] = { message = function(ws, data)
    local keep = data
    data = nil
    local junk = {}
    for i = 1, 200 do junk[i] = ("x"):rep(i) .. i end
    collectgarbage()
    ws:send(keep)
  end },
}
local app = { handlers = { named = { message = function(ws, data) ws:send("named:" .. data) end } } }
function app.upgrade(req)
  if req.path == "/named" then return sy.accept("websocket", "named") end
  local opts = req.path == "/replies" and { max_backpressure = 64 * 1024 * 1024 } or nil
  return sy.accept("websocket", sets[req.path], opts)
end
return app
"""


def expect(s, want, what):
    for opcode, payload in want:
        op, fin, data = ws_read_frame(s)
        if (op, fin, data) != (opcode, True, payload):
            raise RuntimeError(f"{what}: got opcode {op} fin {fin} {data[:40]!r} "
                               f"({len(data)} bytes), want opcode {opcode} {payload[:40]!r} "
                               f"({len(payload)} bytes)")


def close(s):
    s.sendall(ws_frame(0x8, struct.pack("!H", 1000)))
    op, _, data = ws_read_frame(s)
    if op != 0x8 or data[:2] != struct.pack("!H", 1000):
        raise RuntimeError(f"close: got opcode {op} {data!r}")
    s.close()


def messages():
    """1 B, 1,024 B (the largest lone message) and 1,025 B, text ("é" is two bytes) and
    binary."""
    return [(0x1, b"a"), (0x2, b"\x00"), (0x1, ("é" * 512).encode()), (0x2, os.urandom(1024)),
            (0x1, ("a" + "é" * 512).encode()), (0x2, os.urandom(1025))]


def echo(srv):
    s = ws_upgrade(srv.port, "/echo")
    msgs = messages()
    for op, p in msgs:  # one read each
        s.sendall(ws_frame(op, p))
        expect(s, [(op, p)], f"{len(p)} B alone")
    s.sendall(b"".join(ws_frame(op, p) for op, p in msgs))  # one write: the batch path
    expect(s, msgs, "all in one write")
    close(s)


def prefixed(path, prefix):
    """A set on path that answers prefix + the text: one message alone, then two in one write."""
    def run(srv):
        s = ws_upgrade(srv.port, path)
        s.sendall(ws_frame(0x1, b"x"))
        expect(s, [(0x1, prefix + b"x")], f"{path} alone")
        s.sendall(ws_frame(0x1, b"y") + ws_frame(0x1, b"z"))
        expect(s, [(0x1, prefix + b"y"), (0x1, prefix + b"z")], f"{path} in one write")
        close(s)
    return run


def swap(srv):
    s = ws_upgrade(srv.port, "/swap")
    s.sendall(ws_frame(0x1, b"a"))
    expect(s, [(0x1, b"first:a")], "first handler")
    s.sendall(ws_frame(0x1, b"b"))
    expect(s, [(0x1, b"second:b")], "replaced handler")
    s.sendall(ws_frame(0x1, b"c") + ws_frame(0x1, b"d"))
    expect(s, [(0x1, b"second:c"), (0x1, b"second:d")], "replaced handler, one write")
    close(s)


def wait(srv):
    s = ws_upgrade(srv.port, "/wait")
    s.sendall(ws_frame(0x1, b"w1"))
    s.sendall(ws_frame(0x1, b"w2"))  # arrives while the first handler sleeps
    s.sendall(ws_frame(0x1, b"w3") + ws_frame(0x1, b"w4"))
    expect(s, [(0x1, b"waited:w%d" % i) for i in range(1, 5)], "held while waiting")
    close(s)


def fail(srv):
    s = ws_upgrade(srv.port, "/fail")
    s.sendall(ws_frame(0x1, b"ok"))
    expect(s, [(0x1, b"ok")], "before the error")
    s.sendall(ws_frame(0x1, b"boom"))
    op, _, data = ws_read_frame(s)
    if op != 0x8 or data[:2] != struct.pack("!H", 1011):
        raise RuntimeError(f"want close 1011, got opcode {op} {data!r}")
    s.close()
    other = ws_upgrade(srv.port, "/fail")
    other.sendall(ws_frame(0x1, b"still"))
    expect(other, [(0x1, b"still")], "another connection after the error")
    close(other)


BIG = b"L" * (24 * 1024 * 1024)


def replies(srv):
    """A lone message's first reply goes straight to the socket, the ones after it are queued.
    The first is 24 MiB, more than a loopback socket takes while the client does not read, so
    its rest is queued by reference; two small ones follow, in order. A ping in the same write
    as a message is answered first."""
    s = ws_upgrade(srv.port, "/replies")
    for i in range(2):
        tag = b"m%d" % i
        s.sendall(ws_frame(0x1, tag))
        expect(s, [(0x1, BIG + tag), (0x1, b"r2:" + tag), (0x1, b"r3:" + tag)],
               f"three replies to message {i}")
    close(s)
    s = ws_upgrade(srv.port, "/echo")
    s.sendall(ws_frame(0x9, b"pp") + ws_frame(0x1, b"after"))
    expect(s, [(0xA, b"pp"), (0x1, b"after")], "a ping and a message in one write")
    close(s)


def drop(srv):
    s = ws_upgrade(srv.port, "/drop")
    for i in range(5):
        payload = ("drop %d " % i).encode() + "ü".encode() * (i * 50)
        s.sendall(ws_frame(0x1, payload))
        expect(s, [(0x1, payload)], "text kept after the handler dropped it")
    close(s)


def main():
    return run_app_cases(APP, [
        ("plain set: alone and in one write, text and binary, 1 B to 1,025 B", echo),
        ("handler found through the set's __index", prefixed("/meta", b"meta:")),
        ("named handler set", prefixed("/named", b"named:")),
        ("a handler replaced by itself handles the next message", swap),
        ("messages held while a handler waits, answered in order", wait),
        ("a handler error closes 1011; another connection is served", fail),
        ("the received text stays valid after the handler drops it", drop),
        ("several replies to a lone message, in order, the first one in parts", replies),
    ])


if __name__ == "__main__":
    sys.exit(main())
