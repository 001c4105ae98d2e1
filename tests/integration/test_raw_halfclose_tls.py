#!/usr/bin/env python3
"""tests/integration/test_raw_halfclose_tls.py: half-close of raw connections under TLS, with
Python ssl on a --tls-listen port and spec/apps/raw_events.lua (see
spec/integration/raw_halfclose_spec.lua for the cleartext cases):
  - the client's FIN after its bytes runs eof(conn), whose answer still arrives over TLS;
  - conn:shutdown() sends "hello", then close_notify (the client reads EOF), and the server
    still reads what the client sends afterwards; the client's FIN then closes.

A throw-away certificate is made with `openssl req` (nothing is committed). Run from the repo
root with SWITCHYARD_BIN set, with /usr/bin/python3. Every wait is bounded and the run has a
watchdog. Prints "ok - NAME" / "not ok - NAME" and "N passed, N failed".
"""
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, missing_bin, start_watchdog  # noqa: E402

APP = "spec/apps/raw_events.lua"
TMP = tempfile.mkdtemp(prefix="sy-rawtls-")
CERT = os.path.join(TMP, "cert.pem")
KEY = os.path.join(TMP, "key.pem")


def make_cert():
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", KEY, "-out", CERT,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=TIMEOUT * 4)


def tls_connect(port):
    ctx = ssl.create_default_context(cafile=CERT)
    raw = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    s = ctx.wrap_socket(raw, server_hostname="localhost")
    s.settimeout(TIMEOUT * 2)
    return s


def read_until(s, marker):
    buf = b""
    while marker not in buf:
        chunk = s.recv(4096)
        if not chunk:
            raise AssertionError(f"EOF before {marker!r}; got {buf!r}")
        buf += chunk
    return buf


def upgrade(port, token):
    s = tls_connect(port)
    s.sendall(f"GET / HTTP/1.1\r\nHost: x\r\nUpgrade: {token}\r\n"
              "Connection: Upgrade\r\n\r\n".encode())
    head = read_until(s, b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101 "), head
    rest = head.split(b"\r\n\r\n", 1)[1]
    return s, rest


def fin(s):
    """The TCP FIN under the TLS layer, no close_notify (SSLSocket.shutdown would drop TLS)."""
    dup = socket.socket(fileno=os.dup(s.fileno()))
    dup.shutdown(socket.SHUT_WR)
    dup.close()


def read_to_eof(s, have=b""):
    buf = have
    while True:
        chunk = s.recv(4096)
        if not chunk:
            return buf
        buf += chunk


def stats(srv):
    s = tls_connect(srv.tls_port)
    s.sendall(b"GET /stats HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    body = read_to_eof(s).split(b"\r\n\r\n", 1)[1].decode()
    s.close()
    return dict(line.split("=", 1) for line in body.splitlines() if "=" in line)


def wait_for(fn, cap=10.0):
    deadline = time.monotonic() + cap
    while time.monotonic() < deadline:
        if fn():
            return True
        time.sleep(0.02)
    return fn()


def t_eof_answer(srv):
    s, rest = upgrade(srv.tls_port, "half/1")
    s.sendall(b"abcdef")
    fin(s)
    data = read_to_eof(s, rest)
    assert data == b"got 6 bytes\n", data
    s.close()


def t_shutdown_then_read(srv):
    s, rest = upgrade(srv.tls_port, "shut/1")
    data = read_to_eof(s, rest)  # "hello", then close_notify
    assert data == b"hello\n", data
    assert stats(srv).get("shut_write") == "nil closed"
    s.sendall(b"after our FIN")
    assert wait_for(lambda: stats(srv).get("shut_got") == "after our FIN"), stats(srv)
    closes = int(stats(srv).get("closes_shut", "0"))
    fin(s)
    assert wait_for(lambda: int(stats(srv).get("closes_shut", "0")) == closes + 1), stats(srv)
    s.close()


TESTS = [
    ("TLS: the client's FIN runs eof(conn); its answer arrives", t_eof_answer),
    ("TLS: conn:shutdown() sends close_notify and keeps reading", t_shutdown_then_read),
]


def main():
    if missing_bin():
        return 1
    make_cert()
    srv = Server(APP, args=["--tls-listen", "127.0.0.1:0", "--cert", CERT, "--key", KEY])
    start_watchdog(srv, 120)
    passed = failed = 0
    try:
        for name, fn in TESTS:
            try:
                fn(srv)
                passed += 1
                print(f"ok - {name}", flush=True)
            except Exception:
                failed += 1
                print(f"not ok - {name}", flush=True)
                traceback.print_exc()
    finally:
        code = srv.stop()
        if code != 0:
            failed += 1
            print(f"not ok - server exit code {code}; stderr:\n{srv.stderr()}")
        shutil.rmtree(TMP, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
