#!/usr/bin/env python3
"""tests/integration/test_send_anchors.py: a string ws:send queued is let go once written.

ws:send queues the Lua string itself (no copy) and keeps it alive in a slot until the output
queue is done with it; a released slot may keep its string until reused, within a bound of
64 KiB. Checked by the Lua heap (collectgarbage("count") after full collections, answered by
the app send_anchors_app.lua): after a 1 MiB string and after 1,000 distinct 1 KB strings
sent in one handler (all queued, then written) the heap is back within 256 KiB of where it
was, and every message arrived intact and in order. Counts, not timings; bounded waits.
"""
import os
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import TEXT, WS, frame, run  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "send_anchors_app.lua")
MAX_KEPT = 256 * 1024


def ask(ws, s):
    ws.send(frame(TEXT, s.encode()))
    f = ws.read_frame(timeout=30)
    assert f is not None and f[2] == TEXT, f"no answer to {s!r}"
    return f[3].decode()


def let_go(srv):
    ws = WS(srv.port, "/", timeout=30)
    assert ask(ws, "warm") == "warm"
    base = int(ask(ws, "mem"))
    big = ask(ws, "big")
    assert big == "b" * (1024 * 1024), "the 1 MiB string arrived changed"
    after_big = int(ask(ws, "mem"))
    for _ in range(3):  # slots are reused: three rounds of 1,000
        ws.send(frame(TEXT, b"many"))
        for i in range(1, 1001):
            f = ws.read_frame(timeout=30)
            want = (chr(97 + i % 26) * 1000 + str(i)).encode()
            assert f is not None and f[3] == want, f"message {i} of 1000 wrong"
    after_many = int(ask(ws, "mem"))
    ws.close()
    print(f"# Lua heap: {base} B, after 1 MiB sent {after_big} B, after 3 x 1,000 sent "
          f"{after_many} B")
    assert after_big - base < MAX_KEPT, f"1 MiB sent: heap +{after_big - base} B"
    assert after_many - base < MAX_KEPT, f"3,000 strings sent: heap +{after_many - base} B"


if __name__ == "__main__":
    sys.exit(run([("sent strings are let go once written", let_go)], watchdog=120, app=APP))
