#!/usr/bin/env python3
"""tests/integration/test_ws_ping_flood.py: a WebSocket client that pings and never reads.

Pongs go through the same output queue as data: while it is over the high-water mark the
server answers only the most recent ping (RFC 6455 5.5.3) and stops reading until the queue
drains. The client sends up to 64 MiB of 125-byte pings without reading; the server's RSS must
stay bounded (it grew by the size of the flood before), an HTTP client is still served, and
once the client reads, the last pong it gets answers its last ping.

Run from the repo root with SWITCHYARD_BIN set (bounds_app.lua). Stdlib only, bounded waits.
"""
import os
import select
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import (PING, PONG, WS, fds, frame, http_get, parse_frame,  # noqa: E402
                       rss_kib, run)

FLOOD = 64 * 1024 * 1024  # bytes of pings at most
STALL = 2.0               # seconds without progress that end the flood (the server paused)
MAX_GROWTH_KIB = 24 * 1024


def ping(i):
    return frame(PING, b"%08d" % i + b"p" * 117)


def flood(srv):
    pid = srv.proc.pid
    port = srv.port
    ws = WS(port, "/echo")
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    rss0, fd0 = rss_kib(pid), fds(pid)
    one = len(ping(0))
    batch_n = 512
    sock = ws.sock
    sock.setblocking(False)
    sent = 0
    i = 0
    pending = b""
    last_progress = time.monotonic()
    while sent < FLOOD:
        if not pending:
            pending = b"".join(ping(i + k) for k in range(batch_n))
            i += batch_n
        _, w, _ = select.select([], [sock], [], 0.2)
        if not w:
            if time.monotonic() - last_progress > STALL:
                break  # the server stopped reading
            continue
        try:
            n = sock.send(pending)
        except BlockingIOError:
            n = 0
        if n:
            pending = pending[n:]
            sent += n
            last_progress = time.monotonic()
    time.sleep(0.3)
    rss1, fd1 = rss_kib(pid), fds(pid)
    status, _ = http_get(port)
    assert status == 200, f"a plain request during the flood got {status}"
    # Finish the frame in flight while reading (the server may be paused on our reads).
    last = sent // one - 1 + (1 if sent % one else 0)
    rest = (one - sent % one) % one
    tail = pending[:rest]
    want = b"%08d" % last
    buf = b""
    pongs = 0
    got_last = False
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not got_last:
        r, w, _ = select.select([sock], [sock] if tail else [], [], 0.5)
        if w and tail:
            try:
                tail = tail[sock.send(tail):]
            except BlockingIOError:
                pass
        if r:
            chunk = sock.recv(1 << 20)
            assert chunk, "the server closed the connection"
            buf += chunk
            while True:
                f = parse_frame(buf)
                if not f:
                    break
                buf = f[4]
                assert f[2] == PONG, f"unexpected opcode {f[2]}"
                pongs += 1
                if f[3][:8] == want and not tail:
                    got_last = True
    ws.close()
    grew = rss1 - rss0
    print(f"# ping flood: sent {sent >> 20} MiB ({sent // one} pings), RSS {rss0} -> {rss1} KiB, "
          f"fds {fd0} -> {fd1}, {pongs} pongs read", flush=True)
    assert got_last, f"no pong for the last ping ({pongs} pongs read)"
    assert pongs <= sent // one + 1, "more pongs than pings"
    assert grew < MAX_GROWTH_KIB, f"server RSS grew by {grew} KiB under the ping flood"
    return f"{sent >> 20} MiB of pings, RSS +{grew} KiB, {pongs} pongs"


if __name__ == "__main__":
    sys.exit(run([("ping flood from a client that never reads stays bounded", flood)],
                 watchdog=200))
