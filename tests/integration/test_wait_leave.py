#!/usr/bin/env python3
"""tests/integration/test_wait_leave.py: clients that leave at every point of a waiting hook.

Hooks of spec/apps/wait.lua wait (sy.sleep) in app.upgrade, app.request, after an answer, in
WebSocket and raw handlers, and then decide, answer, fail or go on. A client starts each of
them and leaves after a delay that falls before, during and after the wait (close, reset, or
half-close), many times over. The server must stay up, serve a request afterwards, exit 0 on
SIGTERM, and report nothing under AddressSanitizer/UBSan (run in the sanitizer build too: no
C object may be touched after its connection is gone). Its to-be-closed variables must have
run for every hook closed by its client leaving (counted by the app).

Run from the repo root with SWITCHYARD_BIN set. Stdlib only; every wait is a generous cap.
"""
import base64
import os
import socket
import struct
import sys
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, missing_bin, start_watchdog  # noqa: E402

APP = os.path.join(os.getcwd(), "spec", "apps", "wait.lua")
DELAYS = (0, 0.001, 0.004, 0.009, 0.012, 0.02, 0.04)
MODES = ("close", "reset", "halfclose")


def ws_frame(text, opcode=1):
    data = text.encode()
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(data))
    return bytes([0x80 | opcode, 0x80 | len(data)]) + mask + body


def upgrade_ws(path):
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()


def get(path):
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


def upgrade_other(path, token="foo", body=b""):
    head = (f"POST {path} HTTP/1.1\r\nHost: t\r\nUpgrade: {token}\r\nConnection: Upgrade\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode()
    return head + body


# (name, bytes sent at once, bytes sent once the first answer starts (or None))
SCENARIOS = [
    ("request sleeps", get("/sleep?s=0.01") + get("/now"), None),
    ("request answers then sleeps", get("/answer-then-wait?s=0.01"), None),
    ("request fails after its wait", get("/fail"), None),
    ("upgrade sleeps then accepts", upgrade_ws("/slow-upgrade?s=0.01"), None),
    ("upgrade sleeps then rejects", upgrade_other("/slow-reject", body=b"x" * 100), None),
    ("upgrade sleeps then ignores", upgrade_other("/slow-ignore") + get("/now"), None),
    ("upgrade fails after its wait", upgrade_other("/slow-fail"), None),
    ("websocket handler sleeps", upgrade_ws("/ws"),
     ws_frame("sleep 0.01") + ws_frame("one") + ws_frame("", opcode=9) + ws_frame("two")),
    ("websocket handler fails after its wait", upgrade_ws("/ws"),
     ws_frame("fail") + ws_frame("dropped")),
    ("raw handler sleeps", upgrade_other("/raw", "raw-wait"), b"sleep 0.01\nnext\n"),
]


def leave(sock, mode):
    if mode == "reset":
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()
    elif mode == "halfclose":
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(0.05)
        try:
            sock.recv(65536)
        except OSError:
            pass
        sock.close()
    else:
        sock.close()


def one(port, first, then, delay, mode):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(first)
    if then is not None:
        # The switch answer (101) comes first; the rest goes to the new protocol.
        s.settimeout(5)
        got = b""
        while b"\r\n\r\n" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        if got.startswith(b"HTTP/1.1 101"):
            s.sendall(then)
    if delay:
        time.sleep(delay)
    leave(s, mode)


def roundtrip(port, path):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(get(path))
        s.settimeout(10)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            if not chunk:
                break
            buf += chunk
        head, _, body = buf.partition(b"\r\n\r\n")
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        while len(body) < n:
            chunk = s.recv(4096)
            if not chunk:
                break
            body += chunk
        return head.split(b"\r\n")[0], body.decode()


def counters(port):
    _, body = roundtrip(port, "/counters")
    return dict(line.split("=") for line in body.split())


def main():
    if missing_bin():
        return 1
    srv = Server(APP)
    start_watchdog(srv, 240)
    failed = 0
    runs = 0
    try:
        for name, first, then in SCENARIOS:
            for delay in DELAYS:
                for mode in MODES:
                    one(srv.port, first, then, delay, mode)
                    runs += 1
            status, body = roundtrip(srv.port, "/now")
            ok = srv.alive() and status.endswith(b"200 OK") and body == "now\n"
            print(f"{'ok' if ok else 'not ok'} - {name}: {len(DELAYS) * len(MODES)} clients "
                  f"left at every point", flush=True)
            failed += not ok
        # Every hook closed early ran its to-be-closed variables: none is left waiting.
        time.sleep(0.2)
        c = counters(srv.port)
        ok = all(int(c.get(k, 0)) >= 1 for k in ("upgrade_closed", "ws_closed", "raw_closed",
                                                  "after_answer_closed"))
        print(f"{'ok' if ok else 'not ok'} - to-be-closed variables ran ({c})", flush=True)
        failed += not ok
    finally:
        code = srv.stop()
        log = srv.stderr()
    bad = [ln for ln in log.splitlines() if "Sanitizer" in ln or "runtime error" in ln]
    ok = code == 0 and not bad
    print(f"{'ok' if ok else 'not ok'} - {runs} clients; exit {code}, no sanitizer report"
          + ("" if ok else "\n" + "\n".join(bad[:20]) + log[-4000:]), flush=True)
    failed += not ok
    total = len(SCENARIOS) + 2
    print(f"{total - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
