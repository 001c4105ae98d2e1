#!/usr/bin/env python3
"""tests/integration/test_raw_backpressure.py: the raw idle timeout while reading is paused.

A raw connection whose queued output passed the high-water mark stops reading until the peer
has read it down. The peer's bytes then wait unread, so its silence cannot be told: the idle
timeout must not end such a connection (the send timeout bounds a peer that reads nothing).
The client (raw_backpressure_app.lua: 4 MiB per line, idle_timeout 1 s) sends a line every
0.1 s and reads 256 KiB every 0.1 s: each answer takes well over a second to read. It must get
three answers; the connection was closed as idle after the first one before.

Run from the repo root with SWITCHYARD_BIN set. Stdlib only; every wait is a generous cap.
"""
import os
import select
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import run  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "raw_backpressure_app.lua")
ANSWER = 4 * 1024 * 1024
WANT = 3 * ANSWER
STEP = 256 * 1024
PAUSE = 0.1


def t_paused_reading_is_not_idle(srv):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(30)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: bulk\r\nConnection: Upgrade\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        assert chunk, f"closed during the upgrade: {head!r}"
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    s.setblocking(False)
    got = 0
    lines = 0
    eof = False
    t0 = time.monotonic()
    while got < WANT and time.monotonic() - t0 < 60:
        try:
            lines += s.send(b"x\n") // 2
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
                eof = True
                break
            got += len(chunk)
            want -= len(chunk)
        if eof:
            break
        time.sleep(PAUSE)
    s.close()
    assert not eof or got >= WANT, (f"closed after {got} bytes ({got / ANSWER:.2f} answers, "
                                    f"{time.monotonic() - t0:.1f} s) while the client was still "
                                    f"sending lines (idle_timeout 1 s)")
    assert got >= WANT, f"only {got} bytes in 60 s"
    return f"{got} bytes for {lines} lines in {time.monotonic() - t0:.1f} s"


def main():
    return run([("paused reading does not count as the peer's silence",
                 t_paused_reading_is_not_idle)], watchdog=150, app=APP)


if __name__ == "__main__":
    sys.exit(main())
