#!/usr/bin/env python3
"""tests/integration/test_wait_h2.py: over HTTP/2, app.request waiting on one stream does not
hold up the others, and a stream reset (or the connection ending) closes its waiting hook.

spec/apps/wait.lua: /gate?g=NAME waits until /open?g=NAME; /counters reports the hooks closed.
Run from the repo root with SWITCHYARD_BIN set. Every wait is a generous cap.
"""
import os
import socket
import struct
import sys
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, missing_bin, start_watchdog  # noqa: E402
import h2frames as F  # noqa: E402

APP = os.path.join(os.getcwd(), "spec", "apps", "wait.lua")


def pk(port):
    c = F.Conn(port)
    c.start()
    return c


def get(c, stream, path):
    c.headers(stream, F.request_headers(path, "GET", ()), end_stream=True)
    return c.response(stream)


def bodies(c, want, timeout=30):
    """DATA payloads by stream until `want` streams ended."""
    got = {}
    done = []
    deadline = time.monotonic() + timeout
    while len(done) < want and time.monotonic() < deadline:
        f = c.frame(1)
        if f is None:
            continue
        if f.type == F.HEADERS:
            c.decode(f)
        if f.type == F.DATA:
            got[f.stream] = got.get(f.stream, b"") + f.payload
            if f.flags & F.END_STREAM:
                done.append(f.stream)
    return done, got


def counters(port):
    c = pk(port)
    _, body, _ = get(c, 1, "/counters")
    c.close()
    return dict(line.split("=") for line in body.decode().split())


def test_a_waiting_stream_does_not_hold_the_others(srv):
    c = pk(srv.port)
    c.headers(1, F.request_headers("/gate?g=h2a"))
    c.headers(3, F.request_headers("/now"))
    c.headers(5, F.request_headers("/open?g=h2a"))
    done, got = bodies(c, 3)
    # Stream 1 can only end after stream 5 opened its gate, which came after stream 3.
    assert done.index(1) > done.index(5), (done, got)
    assert got == {1: b"opened\n", 3: b"now\n", 5: b"opened\n"}, got
    c.close()


def test_a_reset_stream_closes_its_waiting_hook(srv):
    before = int(counters(srv.port).get("request_closed", 0))
    c = pk(srv.port)
    c.headers(1, F.request_headers("/gate?g=h2b"))
    c.ping()  # the request reached the app before the reset
    c.send(F.rst(1, F.CANCEL))
    h, body, _ = get(c, 3, "/now")
    assert body == b"now\n", (h, body)
    deadline = time.monotonic() + 30
    while int(counters(srv.port).get("request_closed", 0)) != before + 1:
        assert time.monotonic() < deadline, "the waiting hook was not closed"
        time.sleep(0.02)
    c.close()


def test_connection_end_closes_every_waiting_stream(srv):
    before = int(counters(srv.port).get("request_closed", 0))
    c = pk(srv.port)
    for stream in (1, 3, 5):
        c.headers(stream, F.request_headers("/gate?g=h2c"))
    c.ping()
    # A reset: on a FIN alone HTTP/2 goes away gracefully, answering what is pending.
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    deadline = time.monotonic() + 30
    while int(counters(srv.port).get("request_closed", 0)) != before + 3:
        assert time.monotonic() < deadline, "the waiting hooks were not closed"
        time.sleep(0.02)


def main():
    if missing_bin():
        return 1
    srv = Server(APP)
    start_watchdog(srv, 120)
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn(srv)
            passed += 1
            print(f"ok - {name}")
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"not ok - {name}")
            for line in traceback.format_exc().splitlines():
                print("#   " + line)
        if not srv.alive():
            failed += 1
            print("not ok - server died; stderr:\n" + srv.stderr())
            break
    code = srv.stop()
    log = srv.stderr()
    if code != 0 or "Sanitizer" in log or "runtime error" in log:
        failed += 1
        print(f"not ok - server exit code {code}; stderr:\n{log[-4000:]}")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
