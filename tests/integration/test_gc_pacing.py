#!/usr/bin/env python3
"""tests/integration/test_gc_pacing.py: a 16 KiB message does not force a Lua collection.

With Lua's default generational parameters a small app's heap grows by more than the minor
multiplier (20 %) with every 16 KiB message, so each message paid a collection. The server sets
the multipliers so that collections come every several such messages: over 200 echoed 16 KiB
messages the app (gc_pacing_app.lua) counts at most 80 collections (200 before), and the
server's RSS stays bounded. Counts, not timings. Stdlib only, bounded waits.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import BINARY, TEXT, WS, frame, rss_kib, run  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "gc_pacing_app.lua")
MESSAGES = 200
SIZE = 16 * 1024
MAX_COLLECTIONS = 80
MAX_GROWTH_KIB = 32 * 1024


def text(ws, s):
    ws.send(frame(TEXT, s.encode()))
    f = ws.read_frame()
    assert f is not None and f[2] == TEXT, f"no answer to {s!r}"
    return f[3].decode()


def pacing(srv):
    ws = WS(srv.port, "/")
    payload = bytes(range(256)) * (SIZE // 256)
    for _ in range(20):  # warm up: the app's own state settles first
        ws.send(frame(BINARY, payload))
        assert ws.read_frame() is not None
    assert text(ws, "reset") == "ok"
    rss0 = rss_kib(srv.proc.pid)
    for i in range(MESSAGES):
        ws.send(frame(BINARY, payload))
        f = ws.read_frame()
        assert f is not None and f[3] == payload, f"message {i} not echoed"
    n = int(text(ws, "count"))
    growth = rss_kib(srv.proc.pid) - rss0
    ws.close()
    print(f"# {n} collections over {MESSAGES} messages of {SIZE} bytes; RSS +{growth} KiB")
    assert n <= MAX_COLLECTIONS, f"{n} collections over {MESSAGES} messages (max {MAX_COLLECTIONS})"
    assert growth < MAX_GROWTH_KIB, f"RSS grew by {growth} KiB"


if __name__ == "__main__":
    sys.exit(run([("16 KiB messages are not a collection each", pacing)], watchdog=120, app=APP))
