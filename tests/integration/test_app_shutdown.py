#!/usr/bin/env python3
"""tests/integration/test_app_shutdown.py: app.shutdown() runs at SIGTERM/SIGINT before the
WebSockets get their 1001 close.

- it publishes a goodbye, waits (sy.sleep 0.2) and publishes again: every subscribed client
  receives both, in order, and then close 1001; the server exits 0;
- a raw connection still gets its `shutdown(conn)` event, after app.shutdown ended (it writes
  what app.shutdown left in a global), and keeps the grace period;
- an app.shutdown that raises is logged and the stop goes on (1001, exit 0);
- with no connection at all, a waiting app.shutdown still runs to its end before the exit.

Run from the repo root with SWITCHYARD_BIN set. Every wait is a generous cap (30 s) that is
never reached when things work; the servers started here are stopped by PID.
"""
import asyncio
import os
import shutil
import signal
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, case_registry, run_cases  # noqa: E402

import websockets  # noqa: E402

WAIT = 30.0

APP = r"""
local sy = require "switchyard"
local app = {}
local said = "nothing"

function app.upgrade(req)
  if req:offers("line") then
    return sy.accept("line", {
      shutdown = function(conn) conn:write("raw shutdown after " .. said .. "\n"); conn:close() end,
    })
  end
  return sy.accept("websocket", {
    open = function(ws) ws:subscribe("news"); ws:send("subscribed") end,
  })
end

function app.shutdown()
  sy.publish("news", "goodbye")
  said = "goodbye"
  sy.sleep(0.2)
  sy.publish("news", "after the wait")
  said = "the wait"
  @TAIL@
end

return app
"""


def write_app(tail=""):
    d = tempfile.mkdtemp(prefix="sy_shutdown_")
    path = os.path.join(d, "app.lua")
    with open(path, "w") as f:
        f.write(APP.replace("@TAIL@", tail))
    return d, path


def raw_connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: line\r\nConnection: Upgrade\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data
    return s


def raw_rest(s):
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return data.decode()
        data += chunk


async def clients_through_stop(srv, n, sig):
    """n subscribed WebSockets and one raw connection, then sig: what each received."""
    wss = []
    for _ in range(n):
        ws = await websockets.connect(f"ws://127.0.0.1:{srv.port}/", open_timeout=WAIT,
                                      close_timeout=WAIT)
        assert await asyncio.wait_for(ws.recv(), WAIT) == "subscribed"
        wss.append(ws)
    raw = raw_connect(srv.port)
    srv.proc.send_signal(sig)
    got = []
    for ws in wss:
        msgs = []
        try:
            while True:
                msgs.append(await asyncio.wait_for(ws.recv(), WAIT))
        except websockets.exceptions.ConnectionClosed:
            pass
        got.append((msgs, ws.close_code))
    raw_text = await asyncio.get_running_loop().run_in_executor(None, raw_rest, raw)
    raw.close()
    return got, raw_text


TESTS, test = case_registry()


@test("app.shutdown publishes a goodbye, waits, publishes again; then 1001 and exit 0")
def goodbye():
    d, path = write_app()
    srv = Server(path)
    try:
        got, raw_text = asyncio.run(clients_through_stop(srv, 3, signal.SIGTERM))
        for msgs, code in got:
            assert msgs == ["goodbye", "after the wait"], got
            assert code == 1001, got
        assert raw_text == "raw shutdown after the wait\n", raw_text
        rc = srv.proc.wait(WAIT)
        assert rc == 0, f"exit {rc}: {srv.stderr()}"
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


@test("an app.shutdown that raises is logged; the stop goes on (SIGINT)")
def raises():
    d, path = write_app('error("shutdown went wrong")')
    srv = Server(path)
    try:
        got, raw_text = asyncio.run(clients_through_stop(srv, 1, signal.SIGINT))
        assert got == [(["goodbye", "after the wait"], 1001)], got
        assert raw_text == "raw shutdown after the wait\n", raw_text
        rc = srv.proc.wait(WAIT)
        assert rc == 0, f"exit {rc}: {srv.stderr()}"
        log = srv.stderr()
        assert "shutdown went wrong" in log and "app.shutdown" in log, log
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


@test("with no connection, a waiting app.shutdown runs to its end before the exit")
def no_connections():
    d, path = write_app('sy.log("info", "app.shutdown ended")')
    srv = Server(path)
    try:
        t0 = time.monotonic()
        srv.proc.send_signal(signal.SIGTERM)
        rc = srv.proc.wait(WAIT)
        assert rc == 0, f"exit {rc}: {srv.stderr()}"
        assert "app.shutdown ended" in srv.stderr(), srv.stderr()
        assert time.monotonic() - t0 >= 0.2  # it slept 0.2 s (a lower bound only)
    finally:
        srv.stop()
        shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(run_cases(TESTS))
