#!/usr/bin/env python3
"""tests/integration/test_ws_backpressure.py: the WebSocket idle timeout while reading is paused.

A ping that arrives while the queue is over the high-water mark gets its pong once the queue
drains, and reading pauses until then. The client's frames then wait unread, so its silence
cannot be told: the idle timeout must not end the connection meanwhile (the send timeout
bounds a client that reads nothing). The client (ws_backpressure_app.lua: idle_timeout 1 s)
asks for 3 x 4 MiB, pings, then sends a message and reads 256 KiB every 0.1 s. It must get the
12 MiB and then the pong; it got a close 1001 ("idle timeout") instead of the pong before.

Run from the repo root with SWITCHYARD_BIN set. Stdlib only; every wait is a generous cap.
"""
import os
import select
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import (BINARY, CLOSE, PING, PONG, TEXT, WS, close_code, frame,  # noqa: E402
                       parse_frame, run)

APP = os.path.join(os.getcwd(), "tests", "integration", "ws_backpressure_app.lua")
BIG = 4 * 1024 * 1024
STEP = 256 * 1024
PAUSE = 0.1


def t_paused_reading_is_not_idle(srv):
    ws = WS(srv.port, "/")
    s = ws.sock
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.sendall(frame(TEXT, b"go") * 3 + frame(PING, b"held"))
    s.setblocking(False)
    buf = bytearray(ws.buf)
    data = 0
    seen = []
    t0 = time.monotonic()
    done = False
    while not done and time.monotonic() - t0 < 60:
        try:
            s.send(frame(TEXT, b"still here"))
        except BlockingIOError:
            pass
        want = STEP
        deadline = time.monotonic() + 5
        while want and time.monotonic() < deadline:
            r, _, _ = select.select([s], [], [], 0.5)
            if not r:
                continue
            try:
                chunk = s.recv(want)
            except ConnectionResetError:
                chunk = b""
            if not chunk:
                done = True
                seen.append("eof")
                break
            buf += chunk
            want -= len(chunk)
        while True:
            f = parse_frame(bytes(buf))
            if not f:
                break
            _, _, op, payload, rest = f
            del buf[:len(buf) - len(rest)]
            if op == BINARY:
                data += len(payload)
            elif op == PONG:
                seen.append("pong")
                done = True
            elif op == CLOSE:
                seen.append(f"close {close_code(payload)}")
                done = True
        time.sleep(PAUSE)
    ws.close()
    assert "pong" in seen, (f"no pong after {data} bytes of data ({time.monotonic() - t0:.1f} s); "
                            f"got {seen} (idle_timeout 1 s while reading was paused)")
    assert data == 3 * BIG, f"{data} bytes of data before the pong"
    return f"{data} bytes, then the pong, in {time.monotonic() - t0:.1f} s"


def main():
    return run([("a held pong's pause does not count as the client's silence",
                 t_paused_reading_is_not_idle)], watchdog=150, app=APP)


if __name__ == "__main__":
    sys.exit(main())
