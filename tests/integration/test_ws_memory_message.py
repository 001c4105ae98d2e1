#!/usr/bin/env python3
"""tests/integration/test_ws_memory_message.py: a WebSocket message larger than app.lua.max_memory
lets the Lua state hold. Copying it into a Lua string fails for lack of memory; that must fail
only this connection's handler (close 1011, a log line naming the limit), never the server: other
clients go on being served, and a small message on a new connection is echoed.

Run from the repo root with SWITCHYARD_BIN set. Stdlib only, bounded waits."""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import BINARY, TEXT, WS, frame, http_get, run  # noqa: E402

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ws_memory_app.lua")


def big_message(srv):
    bystander = WS(srv.port, "/")
    bystander.send(frame(TEXT, b"before"))
    f = bystander.read_frame(30)
    assert f and f[3] == b"6", f"bystander before: {f}"
    ws = WS(srv.port, "/", timeout=60)
    ws.send(frame(BINARY, b"x" * (8 * 1024 * 1024)))
    code, seen = ws.until_close(60)
    assert code == 1011, f"close code {code}, frames {seen}"
    ws.close()
    assert srv.alive(), f"the server is gone\n{srv.stderr()}"
    assert "Lua memory limit reached" in srv.stderr(), srv.stderr()
    bystander.send(frame(TEXT, b"after!!"))
    f = bystander.read_frame(30)
    assert f and f[3] == b"7", f"bystander after: {f}"
    status, _ = http_get(srv.port)
    assert status == 200, f"plain request after: {status}"
    fresh = WS(srv.port, "/")
    fresh.send(frame(TEXT, b"hi"))
    f = fresh.read_frame(30)
    assert f and f[3] == b"2", f"fresh connection: {f}"
    return "closed 1011, server alive"


if __name__ == "__main__":
    sys.exit(run([("a message larger than max_memory fails its handler, not the server",
                   big_message)], app=APP))
