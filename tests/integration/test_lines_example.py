#!/usr/bin/env python3
"""tests/integration/test_lines_example.py: examples/lines (server.lua + client.py) end to end.

Starts the real binary on 127.0.0.1 port 0 with examples/lines/server.lua, drives it with
examples/lines/client.py and with raw sockets (line buffering across segments, bytes in the
same write as the upgrade, the line length limit), and checks the 426 for plain requests.
Run from the repo root with SWITCHYARD_BIN set. Stdlib only; every wait is bounded.
Prints "ok - NAME" / "not ok - NAME" per test and a final "N passed, N failed" line.
"""
import os
import socket
import subprocess
import sys
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, missing_bin  # noqa: E402

ROOT = os.getcwd()
CLIENT = os.path.join(ROOT, "examples", "lines", "client.py")


def connect(port):
    return socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)


def read_head(sock):
    """Reads one response head; returns (status, headers, leftover bytes)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise AssertionError(f"closed during the response head: {data!r}")
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, rest


def upgrade_request(extra=b""):
    return (b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: lines/1\r\n"
            b"Connection: Upgrade\r\n\r\n" + extra)


class Lines:
    """A raw lines/1 connection."""

    def __init__(self, port, extra=b""):
        self.sock = connect(port)
        self.sock.sendall(upgrade_request(extra))
        status, headers, self.buf = read_head(self.sock)
        assert status == 101, f"status {status}"
        assert headers.get("upgrade") == "lines/1", headers
        assert headers.get("connection", "").lower() == "upgrade", headers

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise AssertionError(f"closed; pending {self.buf!r}")
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line.decode()

    def cmd(self, text):
        self.sock.sendall(text.encode() + b"\n")
        return self.line()

    def expect_closed(self):
        data = self.buf
        while True:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            data += chunk
        assert data == b"", f"extra bytes before close: {data!r}"

    def close(self):
        self.sock.close()


def run_client(port, args=(), stdin=None):
    p = subprocess.run([sys.executable, CLIENT, "--port", str(port), *args],
                       input=stdin, capture_output=True, text=True, timeout=15)
    return p.returncode, p.stdout, p.stderr


# ---------------------------------------------------------------------------------------------

def t_client_commands(srv):
    code, out, err = run_client(srv.port, ["-c", "SET color blue", "-c", "GET color",
                                           "-c", "DEL color", "-c", "GET color",
                                           "-c", "DEL color", "-c", "BOGUS x", "-c", "QUIT"])
    assert code == 0, (code, err)
    assert out.splitlines() == ["OK", "VALUE blue", "OK", "NOT_FOUND", "NOT_FOUND",
                                "ERR unknown command BOGUS", "BYE"], out


def t_client_stdin_script(srv):
    code, out, err = run_client(srv.port, stdin="SET a 1\n\nset b two words\nGET a\nget b\nQUIT\n")
    assert code == 0, (code, err)
    assert out.splitlines() == ["OK", "OK", "VALUE 1", "VALUE two words", "BYE"], out


def t_client_refused_by_plain_http_app(srv_hello):
    code, out, err = run_client(srv_hello.port, ["-c", "GET a"])
    assert code == 1, (code, out, err)
    assert "refused" in err, err


def t_store_shared_between_connections(srv):
    a = Lines(srv.port)
    b = Lines(srv.port)
    try:
        assert a.cmd("SET shared 42") == "OK"
        assert b.cmd("GET shared") == "VALUE 42"
        assert b.cmd("SET shared 43") == "OK"
        assert a.cmd("GET shared") == "VALUE 43"
    finally:
        a.close()
        b.close()


def t_line_split_across_segments(srv):
    c = Lines(srv.port)
    try:
        for piece in (b"SE", b"T split", b" va", b"lue\r\nGE", b"T spl", b"it\n"):
            c.sock.sendall(piece)
            time.sleep(0.03)
        assert c.line() == "OK"
        assert c.line() == "VALUE value"
    finally:
        c.close()


def t_many_lines_in_one_segment(srv):
    c = Lines(srv.port)
    try:
        c.sock.sendall(b"SET m1 a\nSET m2 b\nGET m1\nGET m2\nDEL m1\nGET m1\n")
        assert [c.line() for _ in range(6)] == ["OK", "OK", "VALUE a", "VALUE b", "OK",
                                                "NOT_FOUND"]
    finally:
        c.close()


def t_commands_in_the_upgrade_write(srv):
    c = Lines(srv.port, extra=b"SET early 1\nGET early\n")
    try:
        assert c.line() == "OK"
        assert c.line() == "VALUE 1"
    finally:
        c.close()


def t_usage_errors(srv):
    c = Lines(srv.port)
    try:
        assert c.cmd("SET onlykey").startswith("ERR")
        assert c.cmd("GET").startswith("ERR")
        assert c.cmd("GET a b").startswith("ERR")
        assert c.cmd("GET nothing-here") == "NOT_FOUND"
    finally:
        c.close()


def t_quit_closes(srv):
    c = Lines(srv.port)
    try:
        assert c.cmd("QUIT") == "BYE"
        c.expect_closed()
    finally:
        c.close()


def t_line_too_long_without_newline(srv):
    c = Lines(srv.port)
    try:
        c.sock.sendall(b"SET k " + b"v" * 3000)
        assert c.line() == "ERR line too long"
        c.expect_closed()
    finally:
        c.close()


def t_line_too_long_with_newline(srv):
    c = Lines(srv.port)
    try:
        c.sock.sendall(b"SET k " + b"v" * 1100 + b"\n")
        assert c.line() == "ERR line too long"
        c.expect_closed()
    finally:
        c.close()


def t_line_at_limit_accepted(srv):
    c = Lines(srv.port)
    try:
        value = "w" * (1024 - len("SET big "))
        assert c.cmd("SET big " + value) == "OK"
        assert c.cmd("GET big") == "VALUE " + value
    finally:
        c.close()


def t_plain_request_gets_426(srv):
    s = connect(srv.port)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, _ = read_head(s)
        assert status == 426, status
        assert headers.get("upgrade") == "lines/1", headers
        assert headers.get("connection", "").lower() == "upgrade", headers
    finally:
        s.close()


def t_other_offer_gets_426(srv):
    s = connect(srv.port)
    try:
        s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: lines/2\r\n"
                  b"Connection: Upgrade\r\n\r\n")
        status, headers, _ = read_head(s)
        assert status == 426, status
        assert headers.get("upgrade") == "lines/1", headers
    finally:
        s.close()


def t_server_still_alive(srv):
    assert srv.proc.poll() is None, "server exited"
    t_store_shared_between_connections(srv)


def main():
    if missing_bin():
        return 1
    passed = failed = 0
    servers = []
    try:
        try:
            srv = Server("examples/lines/server.lua")
            servers.append(srv)
            hello = Server("examples/hello.lua")
            servers.append(hello)
        except Exception as e:  # noqa: BLE001 - reported as a failure
            print(f"not ok - start servers: {e}")
            print("0 passed, 1 failed")
            return 1
        tests = [(name, fn) for name, fn in globals().items() if name.startswith("t_")]
        for name, fn in tests:
            try:
                fn(hello if name == "t_client_refused_by_plain_http_app" else srv)
                passed += 1
                print(f"ok - {name[2:]}")
            except Exception:  # noqa: BLE001 - any failure is a test failure
                failed += 1
                print(f"not ok - {name[2:]}")
                for line in traceback.format_exc().splitlines():
                    print("#   " + line)
        for label, s in (("lines", srv), ("hello", hello)):
            code = s.stop()
            if code == 0:
                passed += 1
                print(f"ok - {label} server exits 0 on SIGTERM")
            else:
                failed += 1
                print(f"not ok - {label} server exits 0 on SIGTERM (got {code})")
                print("#   stderr: " + s.stderr()[-2000:])
    finally:
        for s in servers:
            s.stop()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
