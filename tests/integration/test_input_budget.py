#!/usr/bin/env python3
"""tests/integration/test_input_budget.py: the server-wide budget for buffered input and the
body timeout (app.http.max_buffered_total = 4 MiB, body_timeout = 3 s in bounds_app.lua).

Attacking clients hold bodies and messages just short of complete:
  - 32 HTTP/1.1 POSTs of 1 MiB - 1 byte: past the budget they get 503; those held finish
    with 200 once their last byte comes; the server's RSS stays bounded;
  - an HTTP/1.1 body that stops gets 408 after body_timeout, not after keep-alive (60 s);
  - 8 HTTP/2 connections with 4 streams of 1 MiB - 1 byte each, then PINGs only: past the
    budget streams get 503, and the rest 408 after body_timeout (PINGs do not reset it);
  - 24 WebSockets with a fragmented message of 1 MiB - 1 byte: past the budget they close
    with 1013 (try again later);
  - a read with a whole message and then a partial frame that passes the budget: the message
    is answered, then the connection closes with 1013;
  - a WebSocket whose fragmented message stops while it keeps pinging closes with 1001 after
    the idle timeout (pings do not keep a partial message alive);
and after all of them on one server, the whole budget is free again (a 1 MiB POST is served)
and the descriptors are back where they were. Each case runs on a fresh server, so memory one
attack left in the allocator does not hide the next one's.

Run from the repo root with SWITCHYARD_BIN set. Stdlib + python3-hpack; bounded waits.
"""
import os
import socket
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attackers import (BINARY, CONT, MIB, PING, PONG, TEXT, WS, fds, frame,  # noqa: E402
                       http_get, parse_status, read_all, rss_kib, run)
import h2frames as H  # noqa: E402

MAX_GROWTH_KIB = 16 * 1024  # the budget is 4 MiB; buffers may take up to twice what they hold
BODY = b"b" * MIB


def settle(pred, timeout=20.0, step=0.2):
    """Calls pred() until it is true or timeout passes; returns its last value."""
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(step)


def post_head(n):
    return f"POST /up HTTP/1.1\r\nHost: x\r\nContent-Length: {n}\r\n\r\n".encode()


def slow_posts(srv):
    pid, port = srv.proc.pid, srv.port
    n = 32
    rss0, fd0 = rss_kib(pid), fds(pid)
    socks = []
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            s.sendall(post_head(MIB) + BODY[:-1])
        except (ConnectionResetError, BrokenPipeError):
            pass
        socks.append(s)
    time.sleep(0.3)
    rss1, fd1 = rss_kib(pid), fds(pid)
    answers = {}

    def poll():
        for i, s in enumerate(socks):
            if i in answers:
                continue
            s.setblocking(False)
            try:
                data = s.recv(65536)
            except BlockingIOError:
                continue
            except ConnectionResetError:
                data = b""
            answers[i] = parse_status(data)[0]
        return len(answers) >= n - 4

    settle(poll)
    refused = sum(1 for v in answers.values() if v == 503)
    held = [i for i in range(n) if i not in answers]
    print(f"# slow POSTs: RSS {rss0} -> {rss1} KiB, fds {fd0} -> {fd1}, {refused} got 503, "
          f"{len(held)} held, others {sorted(v for v in answers.values() if v != 503)}",
          flush=True)
    finished = 0
    for i in held:
        s = socks[i]
        s.setblocking(True)
        s.settimeout(10)
        s.sendall(b"b")
        data = b""
        while b"\n" not in data.partition(b"\r\n\r\n")[2]:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        status, body = parse_status(data)
        if (status == 200 and body == b"1048576\n") or status == 408:
            finished += 1
    for s in socks:
        s.close()
    grew = rss1 - rss0
    # A held body that waits longer than body_timeout for the others (a slow machine) gets
    # 408 and frees its part of the budget for a later one: either answer is right.
    assert all(v in (503, 408) for v in answers.values()), f"answers {answers}"
    assert refused >= 1, f"none of {n} POSTs got 503 ({answers})"
    assert finished == len(held), f"{finished} of {len(held)} held POSTs finished with 200 (or 408)"
    assert grew < MAX_GROWTH_KIB, f"server RSS grew by {grew} KiB"
    return f"{refused} x 503, {finished} held and served, RSS +{grew} KiB"


def stalled_post(srv):
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
    s.sendall(post_head(10) + b"12345")
    t0 = time.monotonic()
    data = read_all(s, 20)
    s.close()
    status, _ = parse_status(data)
    assert status == 408, f"a stalled body got {status} ({data[:80]!r})"
    return f"408 after {time.monotonic() - t0:.1f} s (body_timeout 3 s)"


class H2Attack:
    """One HTTP/2 connection pushing bodies through its flow-control windows."""

    def __init__(self, port, nstreams, size):
        self.c = H.Conn(port, timeout=10)
        self.c.start()
        self.conn_win = 65535
        self.ids = [1 + 2 * k for k in range(nstreams)]
        self.win = {i: 65535 for i in self.ids}
        self.left = {i: size for i in self.ids}
        self.status = {}
        self.reset = {}
        for i in self.ids:
            self.c.headers(i, H.request_headers("/up", "POST"), end_stream=False)

    def done(self, i):
        return i in self.status or i in self.reset

    def handle(self, f):
        if f.type == H.SETTINGS and not f.flags & H.ACK:
            self.c.send(H.settings(ack=True))
        elif f.type == H.WINDOW_UPDATE:
            inc = int.from_bytes(f.payload[:4], "big") & 0x7FFFFFFF
            if f.stream == 0:
                self.conn_win += inc
            elif f.stream in self.win:
                self.win[f.stream] += inc
        elif f.type == H.HEADERS:
            hs = dict(self.c.decode(f))
            if f.stream in self.win:
                self.status[f.stream] = int(hs.get(":status", 0))
        elif f.type == H.RST_STREAM:
            self.reset[f.stream] = f.error_code()
        elif f.type == H.GOAWAY:
            raise AssertionError(f"GOAWAY {f.error_code()}")

    def pump(self, wait):
        f = self.c.frame(wait)
        while f is not None:
            self.handle(f)
            f = self.c.frame(0.001)

    def push(self):
        quiet = time.monotonic()
        while any(self.left[i] and not self.done(i) for i in self.ids):
            sent = False
            for i in self.ids:
                n = min(16384, self.conn_win, self.win[i], self.left[i])
                if n <= 0 or self.done(i):
                    continue
                self.c.send(H.frame(H.DATA, 0, i, b"d" * n))
                self.conn_win -= n
                self.win[i] -= n
                self.left[i] -= n
                sent = True
            self.pump(0.001 if sent else 0.5)
            if sent:
                quiet = time.monotonic()
            elif time.monotonic() - quiet > 5:
                break  # no window for 5 s

    def ping(self):
        self.c.send(H.frame(H.PING, 0, 0, b"12345678"))
        self.pump(0.001)


def h2_bodies(srv):
    pid, port = srv.proc.pid, srv.port
    rss0, fd0 = rss_kib(pid), fds(pid)
    conns = [H2Attack(port, 4, MIB - 1) for _ in range(8)]
    for a in conns:
        a.push()
    time.sleep(0.3)
    rss1, fd1 = rss_kib(pid), fds(pid)
    busy = sum(1 for a in conns for v in a.status.values() if v == 503)

    def pings():
        for a in conns:
            a.ping()
        return all(a.done(i) for a in conns for i in a.ids)

    settle(pings, timeout=20, step=0.5)
    statuses = [a.status.get(i, a.reset.get(i, "none")) for a in conns for i in a.ids]
    for a in conns:
        a.c.sock.close()
    grew = rss1 - rss0
    print(f"# HTTP/2 bodies: RSS {rss0} -> {rss1} KiB, fds {fd0} -> {fd1}, {busy} x 503 while "
          f"sending, then {statuses}", flush=True)
    assert all(s in (503, 408) for s in statuses), f"streams ended with {statuses}"
    assert statuses.count(503) >= 1, f"no 503: {statuses}"
    assert grew < MAX_GROWTH_KIB, f"server RSS grew by {grew} KiB"
    return f"{statuses.count(503)} x 503, {statuses.count(408)} x 408, RSS +{grew} KiB"


def ws_partial(srv):
    pid, port = srv.proc.pid, srv.port
    n = 24
    rss0, fd0 = rss_kib(pid), fds(pid)
    half = MIB // 2
    msg = frame(BINARY, b"w" * half, fin=False) + frame(CONT, b"w" * (half - 1), fin=False)
    clients = []
    for _ in range(n):
        ws = WS(port, "/echo")
        try:
            ws.send(msg)
        except (ConnectionResetError, BrokenPipeError):
            pass
        clients.append(ws)
    time.sleep(0.3)
    rss1, fd1 = rss_kib(pid), fds(pid)
    codes = {}

    def poll():
        for i, ws in enumerate(clients):
            if i not in codes:
                code, _ = ws.until_close(0.05)
                if code is not None or ws.eof:
                    codes[i] = code
        return sum(1 for c in codes.values() if c == 1013) >= n - 6

    settle(poll)
    for ws in clients:
        ws.close()
    grew = rss1 - rss0
    busy = sum(1 for c in codes.values() if c == 1013)
    print(f"# partial messages: RSS {rss0} -> {rss1} KiB, fds {fd0} -> {fd1}, {busy} x 1013, "
          f"{n - len(codes)} held", flush=True)
    assert busy >= n - 6, f"only {busy} of {n} closed with 1013 ({codes})"
    assert grew < MAX_GROWTH_KIB, f"server RSS grew by {grew} KiB"
    return f"{busy} x 1013, RSS +{grew} KiB"


def ws_messages_then_budget(srv):
    """Four WebSockets hold fragmented messages of 1 MiB - 1 byte (the budget is 4 MiB), each
    confirmed read by a pong. Then one read carries a whole message and the first half of a
    16 KiB frame, which passes the budget: the message is answered first, then 1013 comes."""
    half = MIB // 2
    held = frame(BINARY, b"w" * half, fin=False) + frame(CONT, b"w" * (half - 1), fin=False)
    holders = []
    try:
        for i in range(4):
            ws = WS(srv.port, "/echo")
            holders.append(ws)
            ws.send(held + frame(PING, b"held %d" % i))
            f = ws.read_frame(30)
            assert f and f[2] == PONG and f[3] == b"held %d" % i, f"holder {i} got {f!r}"
        ws = WS(srv.port, "/echo")
        holders.append(ws)
        ws.send(frame(TEXT, b"hello") + frame(BINARY, b"x" * 16384)[:8192])
        code, seen = ws.until_close(30)
    finally:
        for h in holders:
            h.close()
    got = [(f[2], f[3]) for f in seen]
    assert got == [(TEXT, b"hello")] and code == 1013, f"got {got!r} then close {code}"
    return "the message echoed, then 1013"


def ws_stalled_message(srv):
    ws = WS(srv.port, "/stall")
    ws.send(frame(TEXT, b"the start of a message", fin=False))
    t0 = time.monotonic()
    code = None
    while time.monotonic() - t0 < 20:
        ws.send(frame(PING, b"still here"))
        c, _ = ws.until_close(0.5)
        if c is not None or ws.eof:
            code = c
            break
    ws.close()
    assert code == 1001, f"a stalled message with pings got close {code}"
    return f"1001 after {time.monotonic() - t0:.1f} s (idle_timeout 3 s)"


def released(srv):
    pid, port = srv.proc.pid, srv.port
    fd0 = fds(pid)
    for attack in (slow_posts, h2_bodies, ws_partial):
        try:
            attack(srv)
        except AssertionError:
            pass  # reported by its own case; here only what is left afterwards counts
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    s.sendall(post_head(MIB) + BODY)
    data = b""
    while b"\n" not in data.partition(b"\r\n\r\n")[2]:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    status, body = parse_status(data)
    assert (status, body) == (200, b"1048576\n"), f"a 1 MiB POST got {status} {body!r}"
    assert http_get(port)[0] == 200
    n = settle(lambda: fds(pid) <= fd0, timeout=15)
    assert n, f"{fds(pid)} descriptors open, {fd0} before the attacks"
    return f"1 MiB POST served; {fds(pid)} descriptors open"


if __name__ == "__main__":
    sys.exit(run([
        ("32 slow HTTP/1.1 POSTs: 503 past the budget, bounded RSS", slow_posts),
        ("a stalled HTTP/1.1 body gets 408 after body_timeout", stalled_post),
        ("HTTP/2 bodies with PINGs only: 503 past the budget, 408 after body_timeout", h2_bodies),
        ("24 partial WebSocket messages: 1013 past the budget, bounded RSS", ws_partial),
        ("whole messages before a partial frame past the budget are answered, then 1013",
         ws_messages_then_budget),
        ("a stalled WebSocket message is not kept alive by pings", ws_stalled_message),
        ("afterwards the budget and descriptors are free", released),
    ], watchdog=240))
