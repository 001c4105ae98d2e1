#!/usr/bin/env python3
"""tests/integration/test_slow_reader.py: a large answer to a client that reads it steadily.

The send timeout bounds output that makes no progress; output that progresses is never cut,
whatever the keep-alive timeout. The app (slow_reader_app.lua) has keepalive_timeout 1 s and
send_timeout 10 s and answers 16 MiB. The client reads 1 MiB, then pauses 0.1 s (16 MiB then
take 1.6 s at least, past the keep-alive timeout, and the server's writes are never the send
timeout apart), with and without Connection: close (the close used to be bounded by the
keep-alive timeout from the moment the answer was queued, cutting it). A client that never
reads is still closed (by the send timeout).

Run from the repo root with SWITCHYARD_BIN set. Stdlib only; every wait is a generous cap.
"""
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import fds, run  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "slow_reader_app.lua")
BIG = 16 * 1024 * 1024
STEP = 1024 * 1024
PAUSE = 0.1


def slow_get(port, query):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.settimeout(30)
    s.connect(("127.0.0.1", port))
    s.sendall(f"GET /big?{query} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = bytearray()
    body_at = -1
    t0 = time.monotonic()
    while True:
        want = STEP
        while want:
            try:
                chunk = s.recv(want)
            except (ConnectionResetError, socket.timeout):
                chunk = b""
            if not chunk:
                s.close()
                return bytes(data), time.monotonic() - t0
            data += chunk
            want -= len(chunk)
            if body_at < 0 and b"\r\n\r\n" in data:
                body_at = data.index(b"\r\n\r\n") + 4
            if body_at >= 0 and len(data) - body_at >= BIG:
                s.close()
                return bytes(data), time.monotonic() - t0
        time.sleep(PAUSE)


def check_whole(srv, query):
    data, took = slow_get(srv.port, query)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), head[:80]
    assert len(body) == BIG, (f"the answer was cut after {len(body)} of {BIG} bytes "
                              f"({took:.1f} s, keepalive_timeout 1 s)")
    return f"{len(body)} bytes in {took:.1f} s"


def t_keep_alive(srv):
    return check_whole(srv, "keep")


def t_close(srv):
    return check_whole(srv, "close")


def t_never_reads(srv):
    pid = srv.proc.pid
    fd0 = fds(pid)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    s.connect(("127.0.0.1", srv.port))
    s.sendall(b"GET /big?close HTTP/1.1\r\nHost: x\r\n\r\n")
    deadline = time.monotonic() + 5
    while fds(pid) <= fd0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert fds(pid) > fd0, "the connection never showed up"
    deadline = time.monotonic() + 60
    while fds(pid) > fd0 and time.monotonic() < deadline:
        time.sleep(0.1)
    fd1 = fds(pid)
    s.close()
    assert fd1 <= fd0, f"a client that never reads still holds a descriptor ({fd0} -> {fd1})"
    return f"descriptors {fd0} -> {fd1}"


def main():
    return run([("a steady reader gets a whole keep-alive answer", t_keep_alive),
                ("a steady reader gets a whole Connection: close answer", t_close),
                ("a client that never reads is closed", t_never_reads)],
               watchdog=200, app=APP)


if __name__ == "__main__":
    sys.exit(main())
