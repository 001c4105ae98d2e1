#!/usr/bin/env python3
"""Each WebSocket gets the limits its own sy.accept options name, however many sets are in use.

Connections accepted with the same options share one copy of their limits; an accept compares
its options with a bounded number of the copies in use and makes a copy of its own when none
matches. The app takes max_message_size from the query string. Twelve connections stay open,
each with its own size (100, 200, ..., 1200), so more sets are in use than an accept compares
with. Then, for sizes 50 and 5000 (neither in use), a new connection (real client: Python
websockets, its own max_size off) sends a message just above and just below its size: it must
get the echo below and a 1009 close above. Then every one of the twelve first connections is
checked the same way. Waits are bounded, never timed.
"""
import asyncio
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, run_app_cases  # noqa: E402

import websockets  # noqa: E402
from websockets.exceptions import ConnectionClosed  # noqa: E402

APP = """
local sy = require "switchyard"
local handlers = {
  message = function(ws, data, binary) ws:send(data, binary) end,
}
return {
  upgrade = function(req)
    local m = tonumber((req.query or ""):match("m=(%d+)"))
    return sy.accept("websocket", handlers, { max_message_size = m })
  end,
}
"""

KEPT = 12


async def open_ws(port, size):
    return await asyncio.wait_for(
        websockets.connect(f"ws://127.0.0.1:{port}/?m={size}", max_size=None,
                           close_timeout=TIMEOUT, ping_interval=None), TIMEOUT)


async def check(ws, size, what):
    """An echo for size bytes; for size + 1 bytes a close with 1009."""
    ok = os.urandom(size)
    try:
        await asyncio.wait_for(ws.send(ok), TIMEOUT)
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        raise RuntimeError(f"{what}: {size} bytes closed with {code}, not echoed")
    if got != ok:
        raise RuntimeError(f"{what}: no echo of {size} bytes (got {len(got)} bytes)")
    await asyncio.wait_for(ws.send(os.urandom(size + 1)), TIMEOUT)
    try:
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    except ConnectionClosed as e:
        code = e.rcvd.code if e.rcvd else None
        if code != 1009:
            raise RuntimeError(f"{what}: {size + 1} bytes closed with {code}, not 1009")
        return
    raise RuntimeError(f"{what}: {size + 1} bytes over max_message_size {size} were echoed "
                       f"({len(got)} bytes)")


async def run(port):
    """Returns (passed, failed)."""
    passed = failed = 0
    kept = [(await open_ws(port, 100 * (i + 1)), 100 * (i + 1)) for i in range(KEPT)]
    cases = []
    for size in (50, 5000):
        cases.append((await open_ws(port, size), size, "new connection"))
    cases += [(ws, size, "kept connection") for ws, size in kept]
    for ws, size, what in cases:
        try:
            await check(ws, size, f"{what}, max_message_size {size}")
            print(f"ok: {what}, max_message_size {size} ({KEPT} other sets open)")
            passed += 1
        except RuntimeError as e:
            print(f"FAIL: {e}")
            failed += 1
        finally:
            await asyncio.wait_for(ws.close(), TIMEOUT)
    return passed, failed


def limits(srv):
    passed, failed = asyncio.run(run(srv.port))
    if failed:
        raise RuntimeError(f"{failed} of {passed + failed} limit checks failed (above)")


def main():
    return run_app_cases(APP, [("each of twelve option sets keeps its own limits", limits)])


if __name__ == "__main__":
    sys.exit(main())
