#!/usr/bin/env python3
"""A handler set whose fields come through an __index of the app's: its errors fail that
connection, never the server.

The set's __index is the app's code, so looking a handler up through it may raise. Cases, each
on its own connection (raw client of tests/integration/sytest.py), the server checked alive
after each:
- a WebSocket set with a plain `message` and an __index function that raises: a message is
  echoed; then a ping (the core answers it with a pong) makes the server look up `ping`
  through __index: the connection closes with 1011, and the error is logged;
- a raw protocol set whose __index raises for `data`: bytes sent make the connection close;
- a WebSocket set whose `message` and `ping` are inherited through an __index table: both run.
After the three, a new WebSocket is served and the server exits cleanly.
"""
import os
import socket
import struct
import sys
import tempfile

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import (TIMEOUT, Server, run_cases, ws_frame, ws_read_frame,  # noqa: E402
                    ws_upgrade)

APP = r"""
local sy = require "switchyard"
local function boom(t, k) error("index boom for " .. tostring(k)) end
local ws_set = setmetatable({ message = function(ws, d) ws:send(d) end }, { __index = boom })
local raw_set = setmetatable({}, { __index = function(t, k)
  if k == "data" then error("raw index boom") end
end })
local inherited = setmetatable({}, { __index = {
  message = function(ws, d) ws:send("inh:" .. d) end,
  ping = function(ws, d) ws:send("ping:" .. d) end,
} })
return {
  upgrade = function(req)
    if req.path == "/raw" then return sy.accept("x-raw", raw_set) end
    if req.path == "/inh" then return sy.accept("websocket", inherited) end
    return sy.accept("websocket", ws_set)
  end,
}
"""

SRV = None


def read_until_close(s, want_code):
    """Reads frames (answers are allowed before it) until the close; checks its code."""
    while True:
        op, _, data = ws_read_frame(s)
        if op == 0x8:
            if data[:2] != struct.pack("!H", want_code):
                raise RuntimeError(f"close {data!r}, want {want_code}")
            return


def alive():
    s = ws_upgrade(SRV.port, "/inh")
    s.sendall(ws_frame(0x1, b"alive"))
    op, _, data = ws_read_frame(s)
    if (op, data) != (0x1, b"inh:alive"):
        raise RuntimeError(f"server not serving: {op} {data!r}")
    s.close()


def ws_index_error():
    s = ws_upgrade(SRV.port, "/")
    s.sendall(ws_frame(0x1, b"hello"))
    op, _, data = ws_read_frame(s)
    if (op, data) != (0x1, b"hello"):
        raise RuntimeError(f"echo: {op} {data!r}")
    s.sendall(ws_frame(0x9, b"p"))
    op, _, data = ws_read_frame(s)
    if (op, data) != (0xA, b"p"):
        raise RuntimeError(f"pong: {op} {data!r}")
    read_until_close(s, 1011)
    s.close()
    alive()
    if "index boom for ping" not in SRV.stderr():
        raise RuntimeError("the __index error was not logged")


def raw_index_error():
    s = socket.create_connection(("127.0.0.1", SRV.port), timeout=TIMEOUT)
    s.sendall(b"GET /raw HTTP/1.1\r\nHost: x\r\nUpgrade: x-raw\r\nConnection: Upgrade\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        got = s.recv(1)
        if not got:
            raise RuntimeError("closed during the upgrade")
        head += got
    if not head.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(f"no 101: {head!r}")
    s.sendall(b"some bytes")
    while s.recv(4096):
        pass  # closed by the server
    s.close()
    alive()


def inherited():
    s = ws_upgrade(SRV.port, "/inh")
    s.sendall(ws_frame(0x1, b"a"))
    s.sendall(ws_frame(0x9, b"q"))
    got = []
    while len(got) < 3:
        op, _, data = ws_read_frame(s)
        got.append((op, data))
    want = [(0x1, b"inh:a"), (0xA, b"q"), (0x1, b"ping:q")]
    if sorted(got) != sorted(want) or got.index((0x1, b"inh:a")) > got.index((0x1, b"ping:q")):
        raise RuntimeError(f"got {got}")
    s.sendall(ws_frame(0x8, struct.pack("!H", 1000)))
    read_until_close(s, 1000)
    s.close()


def main():
    global SRV
    app = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    app.write(APP)
    app.close()
    SRV = Server(app.name)
    try:
        rc = run_cases([
            ("ws: a handler looked up through a raising __index closes 1011", ws_index_error),
            ("raw: a data handler looked up through a raising __index closes", raw_index_error),
            ("ws: handlers inherited through an __index table run", inherited),
        ], seconds=120)
    finally:
        code = SRV.stop()
        os.unlink(app.name)
    if code not in (0, -15):
        print(f"not ok - server exit code {code}: {SRV.stderr()[-2000:]}")
        return 1
    return rc


if __name__ == "__main__":
    sys.exit(main())
