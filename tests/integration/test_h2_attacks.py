#!/usr/bin/env python3
"""tests/integration/test_h2_attacks.py: hostile HTTP/2 clients against the real binary.

Each test starts its own server (tests/integration/h2_attack_app.lua: a 1 MiB body at /big,
keep-alive timeout 2 s) so its memory and descriptors are measured alone, and speaks raw frames
(h2frames.py):
  - zero window: clients announce SETTINGS_INITIAL_WINDOW_SIZE 0, never send WINDOW_UPDATE,
    ask for the 1 MiB body on many streams and keep the connection alive with PINGs. The
    server's RSS must stay bounded (response bodies held per connection are capped), and every
    connection must be closed with GOAWAY once its responses made no progress for the
    keep-alive timeout, PINGs or not; the descriptors go back to where they were;
  - HPACK bomb: a header block of about 20 KB that decodes to about 64 MB (one 4 KB field
    added to the dynamic table, then indexed 16,000 times), as a request and as trailers: the
    connection ends with GOAWAY ENHANCE_YOUR_CALM, and a request sent right behind the bomb is
    not answered.
Run from the repo root with SWITCHYARD_BIN set. Prints "ok - NAME" / "not ok - NAME" per test
and a final "N passed, N failed" line.
"""
import os
import sys
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, missing_bin, start_watchdog  # noqa: E402
import h2frames as F  # noqa: E402

APP = os.path.join("tests", "integration", "h2_attack_app.lua")
STALL = 2.0                # h2_attack_app.lua: send_timeout
ENHANCE_YOUR_CALM = 11
CONNS = 4                  # attacking connections
STREAMS = 50               # requests for 1 MiB on each (the server allows 100 at once)
RSS_BOUND_KIB = 64 * 1024  # growth allowed: a few MiB per connection; unbounded it is 200 MiB


def status_kib(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def cpu_seconds(pid):
    """utime + stime of pid, in seconds (reported, never asserted: it depends on the machine)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def fds(pid):
    return len(os.listdir(f"/proc/{pid}/fd"))


def finish(srv):
    """Stops srv; a sanitizer report or a crash shows as an exit code other than 0."""
    code = srv.stop()
    assert code == 0, f"server exit code {code}; stderr:\n{srv.stderr()}"


def settle(pid, want, seconds=30):
    """Waits (bounded) until pid has at most want descriptors; returns the count."""
    deadline = time.monotonic() + seconds
    n = fds(pid)
    while n > want and time.monotonic() < deadline:
        time.sleep(0.05)
        n = fds(pid)
    return n


# ---- HPACK by hand (RFC 7541) ------------------------------------------------------------------

def hpack_int(value, prefix_bits, first=0):
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    out.append(value)
    return bytes(out)


def literal_indexed(name, value):
    """Literal header field with incremental indexing, new name, no Huffman (6.2.1)."""
    return (hpack_int(0, 6, 0x40) + hpack_int(len(name), 7) + name +
            hpack_int(len(value), 7) + value)


def literal_plain(name, value):
    """Literal header field without indexing, new name (6.2.2): leaves the table alone."""
    return hpack_int(0, 4) + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value


def plain_request(path):
    return b"".join(literal_plain(k.encode(), v.encode())
                    for k, v in F.request_headers(path))


def bomb(refs=16000):
    """A 4000-byte field into the dynamic table (index 62), then refs references to it."""
    return literal_indexed(b"x-bomb", b"b" * 4000) + hpack_int(62, 7, 0x80) * refs


def header_frames(stream, block, end_stream):
    """HEADERS + CONTINUATION frames of at most 16384 bytes carrying block."""
    parts = [block[i:i + 16384] for i in range(0, len(block), 16384)]
    es = F.END_STREAM if end_stream else 0
    out = F.frame(F.HEADERS, es | (F.END_HEADERS if len(parts) == 1 else 0), stream, parts[0])
    for i, p in enumerate(parts[1:], 1):
        out += F.frame(F.CONTINUATION, F.END_HEADERS if i == len(parts) - 1 else 0, stream, p)
    return out


# ---- tests -------------------------------------------------------------------------------------

def test_zero_window_is_bounded_and_closed():
    srv = Server(APP)
    try:
        pid = srv.proc.pid
        # A warm-up request, so the app's 1 MiB body and the pools exist before the baseline.
        c = F.Conn(srv.port)
        c.start()
        c.headers(1, F.request_headers("/big"))
        h, body, _ = c.response(1)
        assert h and h[":status"] == "200" and len(body) == 1 << 20, (h, len(body))
        c.close()
        fd0 = settle(pid, fds(pid) - 1, 5)
        rss0 = status_kib(pid, "VmRSS")
        start = time.monotonic()  # no stall can be counted before this
        conns = []
        for _ in range(CONNS):
            c = F.Conn(srv.port)
            c.start((0x4, 0))   # SETTINGS_INITIAL_WINDOW_SIZE 0, and never a WINDOW_UPDATE
            for i in range(STREAMS):
                c.headers(1 + 2 * i, F.request_headers("/big"))
            conns.append(c)
        for c in conns:
            c.ping()  # every request was processed (taken, or held back) before the ACK
        rss1 = status_kib(pid, "VmRSS")
        fd1 = fds(pid)
        # PINGs every 0.2 s: they must not keep the stalled connections open.
        goaway = {}
        closed_at = {}
        while len(closed_at) < CONNS and time.monotonic() - start < 30:
            for i, c in enumerate(conns):
                if i in closed_at:
                    continue
                try:
                    c.send(F.frame(F.PING, 0, 0, b"keepaliv"))
                except OSError:
                    pass
                while True:
                    f = c.frame(0.05)
                    if f is None:
                        break
                    if f.type == F.SETTINGS and not f.flags & F.ACK:
                        c.send(F.settings(ack=True))
                    if f.type == F.GOAWAY:
                        goaway[i] = f
                if c.closed:
                    closed_at[i] = time.monotonic() - start
            time.sleep(0.2)
        rss2 = status_kib(pid, "VmRSS")
        for c in conns:
            c.close()
        fd2 = settle(pid, fd0)
        note = (f"RSS {rss0} -> {rss1} kB with {CONNS}x{STREAMS} requests held, {rss2} kB at "
                f"the end; fds {fd0} -> {fd1} -> {fd2}; closed after {closed_at}")
        print("# " + note)
        assert rss1 - rss0 < RSS_BOUND_KIB, note
        assert len(closed_at) == CONNS, "connections still open while PINGing: " + note
        assert all(i in goaway and goaway[i].error_code() == F.NO_ERROR for i in range(CONNS)), \
            (goaway, note)
        # Closed for the stall, not before it (the stall cannot start before `start`).
        assert all(t >= STALL for t in closed_at.values()), note
        assert fd2 <= fd0, note
        finish(srv)
    finally:
        srv.stop()


def test_a_slow_window_is_not_a_stall():
    # The same window of 0, opened a little at a time faster than the stall time: the body
    # makes progress, so the connection is not closed, and every byte arrives.
    srv = Server(APP)
    try:
        c = F.Conn(srv.port)
        c.start((0x4, 0))
        c.headers(1, F.request_headers("/big"))
        got = 0
        end = False
        deadline = time.monotonic() + 60
        last = 0.0
        while not end and time.monotonic() < deadline:
            if time.monotonic() - last > STALL / 4:
                c.send(F.window_update(0, 128 * 1024) + F.window_update(1, 128 * 1024))
                last = time.monotonic()
            f = c.frame(0.05)
            if f is None:
                assert not c.closed, f"closed after {got} bytes"
                continue
            if f.type == F.SETTINGS and not f.flags & F.ACK:
                c.send(F.settings(ack=True))
            if f.type == F.GOAWAY:
                raise AssertionError(f"GOAWAY after {got} bytes: {f}")
            if f.type == F.HEADERS:
                c.decode(f)
            if f.type == F.DATA and f.stream == 1:
                got += len(f.payload)
                end = bool(f.flags & F.END_STREAM)
        assert end and got == 1 << 20, got
        c.close()
        finish(srv)
    finally:
        srv.stop()


def test_requests_held_back_are_served_when_the_window_opens():
    # Five requests for 1 MiB behind a window of 0: the first answer is held, the others wait
    # before reaching the app. Opening the windows lets all five through, in full.
    srv = Server(APP)
    try:
        c = F.Conn(srv.port)
        c.start((0x4, 0))
        ids = [1, 3, 5, 7, 9]
        for i in ids:
            c.headers(i, F.request_headers("/big"))
        c.headers(11, F.request_headers("/small"))
        c.ping()
        c.send(F.settings((0x4, 0x7FFFFFFF)) + F.window_update(0, 0x7FFFFFFF - 65535))
        bodies, ended = {}, set()
        deadline = time.monotonic() + 60
        while len(ended) < len(ids) + 1 and time.monotonic() < deadline:
            f = c.frame(1)
            if f is None:
                assert not c.closed, (len(ended), {k: len(v) for k, v in bodies.items()})
                continue
            if f.type == F.HEADERS:
                assert dict(c.decode(f))[":status"] == "200", f
            if f.type == F.DATA:
                bodies.setdefault(f.stream, bytearray()).extend(f.payload)
            if f.type in (F.GOAWAY, F.RST_STREAM):
                raise AssertionError(f)
            if f.type in (F.DATA, F.HEADERS) and f.flags & F.END_STREAM:
                ended.add(f.stream)
        assert ended == set(ids + [11]), (ended, {k: len(v) for k, v in bodies.items()})
        assert all(len(bodies[i]) == 1 << 20 for i in ids), {k: len(v) for k, v in bodies.items()}
        assert bytes(bodies[11]) == b"ok /small\n", bodies[11]
        c.close()
        finish(srv)
    finally:
        srv.stop()


def bomb_case(send):
    srv = Server(APP)
    try:
        c = F.Conn(srv.port)
        c.start()
        cpu0 = cpu_seconds(srv.proc.pid)
        send(c)
        seen, g = c.frames_until(lambda f: f.type == F.GOAWAY, timeout=30)
        status = {f.stream: dict(c.decode(f)).get(":status") for f in seen
                  if f.type == F.HEADERS}
        answered = list(status)
        print(f"# server CPU for the bomb: {cpu_seconds(srv.proc.pid) - cpu0:.3f} s; "
              f"answers {status}; then {g}")
        assert g is not None, f"no GOAWAY; saw {seen}"
        assert g.error_code() == ENHANCE_YOUR_CALM, g
        assert status.get(1) == "431", status
        # Nothing after the bomb was taken: GOAWAY names no later stream and none is answered.
        assert g.last_stream() <= 1, g
        assert 3 not in answered, seen
        rest, _ = c.frames_until(lambda f: False, timeout=15)
        assert c.closed, f"still open after GOAWAY; then saw {rest}"
        assert all(f.stream != 3 for f in rest), rest
        assert srv.alive(), srv.stderr()
        c.close()
        finish(srv)
    finally:
        srv.stop()


def test_hpack_bomb_in_a_request_ends_the_connection():
    def send(c):
        # The bomb on stream 1 and a plain request on stream 3 in one write.
        c.send(header_frames(1, plain_request("/") + bomb(), True) +
               header_frames(3, plain_request("/after"), True))
    bomb_case(send)


def test_hpack_bomb_in_trailers_ends_the_connection():
    def send(c):
        c.send(header_frames(1, plain_request("/"), False) +
               F.frame(F.DATA, 0, 1, b"body") +
               header_frames(1, bomb(), True) +
               header_frames(3, plain_request("/after"), True))
    bomb_case(send)


def main():
    if missing_bin():
        return 1
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    start_watchdog(type("NoServer", (), {"stop": lambda self: None})(), 280)
    for name, fn in tests:
        try:
            fn()
            passed += 1
            print(f"ok - {name}", flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"not ok - {name}", flush=True)
            for line in traceback.format_exc().splitlines():
                print("#   " + line)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
