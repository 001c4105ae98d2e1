#!/usr/bin/env python3
"""tests/integration/test_idle_options.py: app.options.idle_timeout = 0 for raw and WebSocket.

`app.options` is the app-wide default of raw connections and WebSockets alike, and 0 means no
idle limit. A WebSocket accepted under it must open (it got 500 when only raw connections took
0), stay open while silent, and a message in progress that stops growing is still cut (1001,
after body_timeout), so no idle limit does not mean an unbounded partial message.

Run from the repo root with SWITCHYARD_BIN set. Stdlib only, bounded waits: every wait is a
cap that is never reached when the server works.
"""
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import CLOSE, TEXT, WS, frame, read_all, run  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "idle_options_app.lua")
SILENCE = 2.5  # seconds without a byte: longer than the fixture's body_timeout


def websocket_opens_and_stays(srv):
    ws = WS(srv.port, "/")
    time.sleep(SILENCE)
    ws.send(frame(TEXT, b"still here"))
    f = ws.read_frame(30)
    assert f is not None and f[2] == TEXT and f[3] == b"still here", f"no echo: {f!r}"
    ws.close()
    return "101, echo after silence"


def raw_opens_and_stays(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: lines\r\nConnection: Upgrade\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, f"closed during the upgrade: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    time.sleep(SILENCE)
    s.sendall(b"x\n")
    got = b""
    while got != b"x\n":
        chunk = s.recv(64)
        assert chunk, "closed while silent under idle_timeout = 0"
        got += chunk
    s.close()
    return "101, echo after silence"


def stalled_message_is_cut(srv):
    ws = WS(srv.port, "/")
    ws.send(frame(TEXT, b"first part", fin=False))
    code, _ = ws.until_close(60)
    assert code == 1001, f"a stalled message was not cut with 1001 (got {code})"
    ws.close()
    return "1001"


def main():
    return run([("a WebSocket opens under app.options.idle_timeout = 0", websocket_opens_and_stays),
                ("a raw connection opens under app.options.idle_timeout = 0", raw_opens_and_stays),
                ("a stalled message is cut without an idle limit", stalled_message_is_cut)],
               watchdog=200, app=APP)


if __name__ == "__main__":
    sys.exit(main())
