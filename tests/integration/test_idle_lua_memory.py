#!/usr/bin/env python3
"""tests/integration/test_idle_lua_memory.py: the Lua heap of idle WebSockets.

Opens 2000 WebSockets to idle_lua_app.lua (an echo app like examples/echo.lua) and reads the
app's Lua heap (collectgarbage("count")) before and after a full collection:
- what a full collection frees is garbage the upgrades left (their request, decision and
  option objects): at most 32 KiB in all once the loop was idle (a young collection follows
  every 16 upgrades), not a share of every connection;
- what stays per connection: at most 40 bytes each. The Lua handle of a WebSocket is made on
  first use (a handler event, a topic, a lookup by id): an idle one with no open handler has
  none, only a share of the accept's fields kept once for every connection accepted alike
  (161 bytes each when every connection had its handle: a 144-byte userdata with two user
  values and its registry slot).
Counts of bytes, not timings. Stdlib only, bounded waits.
"""
import os
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import WS, http_get, run  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "idle_lua_app.lua")
CONNS = 2000
MAX_GARBAGE = 32 * 1024  # bytes left by the upgrades, in all
MAX_HANDLE = 40          # bytes per idle connection in the Lua heap


def heap(port, path):
    status, body = http_get(port, path)[:2]
    assert status == 200, f"{path}: status {status}"
    return int(body.strip())


def idle(srv):
    base = heap(srv.port, "/full")
    conns = [WS(srv.port, "/") for _ in range(CONNS)]
    time.sleep(0.5)  # the loop goes idle
    now = heap(srv.port, "/mem")
    full = heap(srv.port, "/full")
    garbage = now - full
    per = (full - base) / CONNS
    for c in conns:
        c.close()
    print(f"# Lua heap: {per:.0f} bytes per idle WebSocket; {garbage} bytes of garbage")
    assert garbage <= MAX_GARBAGE, f"{garbage} bytes of garbage after {CONNS} upgrades"
    assert per <= MAX_HANDLE, f"{per:.0f} bytes per idle connection"


if __name__ == "__main__":
    sys.exit(run([("idle WebSockets: small handles, no upgrade garbage", idle)],
                 watchdog=120, app=APP))
