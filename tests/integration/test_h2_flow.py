#!/usr/bin/env python3
"""tests/integration/test_h2_flow.py: HTTP/2 flow control and the h2c upgrade with real clients.

Starts the server on 127.0.0.1 port 0 (cleartext and TLS) with tests/integration/h2_flow_app.lua
(keep-alive timeout 120 s) and drives it with Debian's nghttp, h2load and curl:
  - large client windows (1 MiB and more) and bodies larger than them: the output queue passes
    its high-water mark, drains, and the client's WINDOW_UPDATEs must still be read; a
    connection that stops reading them stalls until the idle timeout, so every client call here
    is capped far below that timeout (a stall fails the test instead of finishing late);
  - curl --http2 (the h2c upgrade) with a response over 32 KiB, repeated: Debian's curl keeps
    at most 32 KiB behind the 101 response, so stream 1's DATA must wait for the client preface.
Run from the repo root with SWITCHYARD_BIN set. Prints "ok - NAME" / "not ok - NAME" per test
and a final "N passed, N failed" line.
"""
import os
import shutil
import subprocess
import sys
import tempfile
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, missing_bin, start_watchdog  # noqa: E402

APP = os.path.join("tests", "integration", "h2_flow_app.lua")
CAP = 40  # seconds for one client call: far above the work, far below the 120 s idle timeout
TMP = tempfile.mkdtemp(prefix="sy-h2flow.")
CERT = os.path.join(TMP, "cert.pem")
KEY = os.path.join(TMP, "key.pem")


def pattern(n):
    return b"".join(b"%07d|" % i * 8192 for i in range(n // 65536 + 1))[:n]


def run(argv, out=subprocess.PIPE):
    try:
        return subprocess.run(argv, stdout=out, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                              timeout=CAP)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"{argv[0]} did not finish within {CAP} s (a stalled connection): "
                             f"{' '.join(argv)}")


def nghttp_body(url, n, *opts):
    """nghttp with the given options fetches url; the body must be pattern(n)."""
    path = os.path.join(TMP, "body")
    with open(path, "wb") as f:
        r = run(["nghttp", *opts, url], out=f)
    assert r.returncode == 0, (r.returncode, r.stderr.decode()[-500:])
    with open(path, "rb") as f:
        body = f.read()
    os.unlink(path)
    assert len(body) == n, (len(body), n)
    assert body == pattern(n), "body differs"


def h2load(url, *opts):
    r = run(["h2load", *opts, url])
    out = r.stdout.decode()
    assert r.returncode == 0, (r.returncode, out[-800:], r.stderr.decode()[-300:])
    line = [ln for ln in out.splitlines() if ln.startswith("requests:")]
    assert line, out[-800:]
    return line[0], out


# ---- tests -------------------------------------------------------------------------------------

def test_nghttp_16mib_with_1mib_windows(srv):
    # Windows of 1 MiB (stream and connection, -w/-W 20): the 16 MiB body passes the 1 MiB
    # output mark many times over; every WINDOW_UPDATE must be read.
    n = 16 * 1024 * 1024
    nghttp_body(f"http://127.0.0.1:{srv.port}/bytes?{n}", n, "-w", "20", "-W", "20")


def test_nghttp_browser_sized_windows(srv):
    # Windows like a browser's: 4 MiB per stream, 8 MiB for the connection.
    n = 16 * 1024 * 1024
    nghttp_body(f"http://127.0.0.1:{srv.port}/bytes?{n}", n, "-w", "22", "-W", "23")


def test_nghttp_h2c_upgrade_with_1mib_windows(srv):
    n = 8 * 1024 * 1024
    nghttp_body(f"http://127.0.0.1:{srv.port}/bytes?{n}", n, "-u", "-w", "20", "-W", "20")


def test_nghttp_over_tls_with_1mib_windows(srv):
    n = 16 * 1024 * 1024
    nghttp_body(f"https://127.0.0.1:{srv.tls_port}/bytes?{n}", n, "-w", "20", "-W", "20")


def test_h2load_many_streams_of_900kib(srv):
    # 4 connections x 4 streams of 900 KiB at once through 1 MiB windows: every request ends.
    line, out = h2load(f"http://127.0.0.1:{srv.port}/bytes?921600",
                       "-c4", "-n48", "-m4", "-w", "20", "-W", "20")
    assert "48 total, 48 started, 48 done, 48 succeeded, 0 failed, 0 errored" in line, out[-800:]


def test_h2load_default_windows(srv):
    # h2load's own windows (1 GiB - 1): nothing but the output mark holds the server back.
    line, out = h2load(f"http://127.0.0.1:{srv.port}/bytes?921600", "-c4", "-n48", "-m4")
    assert "48 total, 48 started, 48 done, 48 succeeded, 0 failed, 0 errored" in line, out[-800:]


def test_h2load_over_tls(srv):
    line, out = h2load(f"https://127.0.0.1:{srv.tls_port}/bytes?921600",
                       "-c2", "-n16", "-m4", "-w", "20", "-W", "20")
    assert "16 total, 16 started, 16 done, 16 succeeded, 0 failed, 0 errored" in line, out[-800:]


def test_curl_h2c_upgrade_with_bodies_over_32kib(srv):
    # Debian's curl 7.88 fails (exit 16, "connection buffer size is too small to store data
    # following HTTP Upgrade response header") when more than 32 KiB follow the 101 before it
    # has sent its preface. Every run must succeed.
    for i, n in enumerate([40000, 200000, 1024 * 1024] * 4):
        path = os.path.join(TMP, "curl-body")
        r = run(["curl", "--noproxy", "*", "-sS", "--http2", "--max-time", str(CAP - 5),
                 "-o", path, "-w", "%{http_version} %{http_code}",
                 f"http://127.0.0.1:{srv.port}/bytes?{n}"])
        assert r.returncode == 0, (i, n, r.returncode, r.stderr.decode())
        assert r.stdout == b"2 200", (i, n, r.stdout)
        with open(path, "rb") as f:
            assert f.read() == pattern(n), (i, n, "body differs")
        os.unlink(path)


def main():
    if missing_bin():
        return 1
    for tool in ("nghttp", "h2load", "curl", "openssl"):
        if not shutil.which(tool):
            print(f"not ok - {tool} is not installed (Debian: nghttp2-client, curl, openssl)")
            print("0 passed, 1 failed")
            return 1
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", KEY, "-out", CERT,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=TIMEOUT * 4)
    srv = Server(APP, args=["--tls-listen", "127.0.0.1:0", "--cert", CERT, "--key", KEY])
    start_watchdog(srv, 280)
    tests = [(n, f) for n, f in globals().items() if n.startswith("test_") and callable(f)]
    passed = failed = 0
    for name, fn in tests:
        try:
            fn(srv)
            passed += 1
            print(f"ok - {name}", flush=True)
        except Exception:  # noqa: BLE001 - report every failure and go on
            failed += 1
            print(f"not ok - {name}", flush=True)
            for line in traceback.format_exc().splitlines():
                print("#   " + line)
        if not srv.alive():
            failed += 1
            print("not ok - server died; stderr:\n" + srv.stderr())
            break
    code = srv.stop()
    if code != 0:
        failed += 1
        print(f"not ok - server exit code {code}; stderr:\n{srv.stderr()}")
    shutil.rmtree(TMP, ignore_errors=True)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
