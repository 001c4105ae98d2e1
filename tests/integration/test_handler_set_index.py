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
import struct
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import (http_upgrade, run_app_cases, ws_frame, ws_read_frame,  # noqa: E402
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


def read_until_close(s, want_code):
    """Reads frames (answers are allowed before it) until the close; checks its code."""
    while True:
        op, _, data = ws_read_frame(s)
        if op == 0x8:
            if data[:2] != struct.pack("!H", want_code):
                raise RuntimeError(f"close {data!r}, want {want_code}")
            return


def echo_once(s, payload, want):
    s.sendall(ws_frame(0x1, payload))
    op, _, data = ws_read_frame(s)
    if (op, data) != (0x1, want):
        raise RuntimeError(f"sent {payload!r}: got {op} {data!r}, want {want!r}")


def alive(srv):
    s = ws_upgrade(srv.port, "/inh")
    echo_once(s, b"alive", b"inh:alive")
    s.close()


def ws_index_error(srv):
    s = ws_upgrade(srv.port, "/")
    echo_once(s, b"hello", b"hello")
    s.sendall(ws_frame(0x9, b"p"))
    op, _, data = ws_read_frame(s)
    if (op, data) != (0xA, b"p"):
        raise RuntimeError(f"pong: {op} {data!r}")
    read_until_close(s, 1011)
    s.close()
    alive(srv)
    if "index boom for ping" not in srv.stderr():
        raise RuntimeError("the __index error was not logged")


def raw_index_error(srv):
    s = http_upgrade(srv.port, "/raw", "Upgrade: x-raw\r\nConnection: Upgrade\r\n")
    s.sendall(b"some bytes")
    while s.recv(4096):
        pass  # closed by the server
    s.close()
    alive(srv)


def inherited(srv):
    s = ws_upgrade(srv.port, "/inh")
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
    return run_app_cases(APP, [
        ("ws: a handler looked up through a raising __index closes 1011", ws_index_error),
        ("raw: a data handler looked up through a raising __index closes", raw_index_error),
        ("ws: handlers inherited through an __index table run", inherited),
    ])


if __name__ == "__main__":
    sys.exit(main())
