#!/usr/bin/python3
"""sy.tcp() against peers this test runs on loopback: lines, byte counts and read-all, a host
name, refused, a receive timeout with its partial data, the peer closing mid-receive,
an 8 MiB send to a slow reader, TLS (verified against a CA file, failing against the system store,
verify off, SNI sent), the error for waiting at load time, and a client that leaves while its
hook waits: the hook is closed and its socket closes."""
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import ssl
import urllib.request

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, missing_bin, start_watchdog  # noqa: E402

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tcp_app.lua")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {what}")
    else:
        failed += 1
        print(f"not ok - {what}")


class Peer:
    """A loopback listener whose connections each run handler(conn) in a thread."""

    def __init__(self, handler, tls_ctx=None, rcvbuf=None):
        self.sock = socket.socket()
        if rcvbuf:  # before listen, so the window is small from the handshake on
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.handler, self.tls_ctx = handler, tls_ctx
        self.events = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            c.settimeout(30)
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        try:
            if self.tls_ctx:
                c = self.tls_ctx.wrap_socket(c, server_side=True)
            self.handler(self, c)
        except (OSError, ssl.SSLError) as e:
            self.events.append(("error", str(e)))
        finally:
            c.close()

    def close(self):
        self.sock.close()


def readline(c):
    buf = b""
    while not buf.endswith(b"\n"):
        b = c.recv(1)
        if not b:
            break
        buf += b
    return buf


def h_lines(p, c):
    line = readline(c)
    c.sendall(line.strip().upper() + b"\r\nabcREST")


def h_echo_line(p, c):
    c.sendall(readline(c).strip().upper() + b"\n")


def h_silent_hi(p, c):
    c.sendall(b"hi")
    time.sleep(3)


def h_abc_close(p, c):
    c.sendall(b"abc")


def h_slow_reader(p, c):
    total = 0
    time.sleep(0.5)  # the server's send queue fills meanwhile
    want = 8 * 1024 * 1024
    while total < want:
        b = c.recv(65536)
        if not b:
            break
        total += len(b)
    c.sendall(b"%d\n" % total)


def h_wait_close(p, c):
    c.settimeout(30)
    data = c.recv(1)  # the server's socket closes: EOF
    p.events.append(("eof", data))


def get(port, path, timeout=30):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=timeout) as r:
        return r.read().decode()


def make_cert(d):
    key, crt = os.path.join(d, "key.pem"), os.path.join(d, "cert.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt, "-days", "2",
                    "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, capture_output=True)
    return key, crt


def main():
    if missing_bin():
        return 1
    srv = Server(APP)
    start_watchdog(srv, 150)
    tmp = tempfile.mkdtemp(prefix="sy-tcp.")
    try:
        msg = get(srv.port, "/load_error")
        check("can only wait inside a hook" in msg, f"connecting at load time raises: {msg}")

        p = Peer(h_lines)
        got = get(srv.port, f"/lines?port={p.port}")
        check(got == "HELLO|abc|REST|nil|closed", f"*l, n bytes, *a, then closed: {got}")
        p = Peer(h_echo_line)
        got = get(srv.port, f"/name?port={p.port}")
        check(got == "1|X", f"a host name resolves (localhost): {got}")
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]
        s.close()
        got = get(srv.port, f"/refused?port={closed_port}")
        check(got == "nil|refused", f"a closed port: {got}")
        p = Peer(h_silent_hi)
        got = get(srv.port, f"/timeout?port={p.port}")
        check(got == "nil|timeout|hi", f"settimeout bounds a receive, partial data kept: {got}")
        p = Peer(h_wait_close)
        got = get(srv.port, f"/closed_meanwhile?port={p.port}")
        check(got == "nil|closed|nil|closed", f"closed by a timer while a receive waits: {got}")
        p = Peer(h_abc_close)
        got = get(srv.port, f"/partial?port={p.port}")
        check(got == "nil|closed|abc", f"the peer closing mid-receive: {got}")
        p = Peer(h_slow_reader, rcvbuf=16384)
        got = get(srv.port, f"/big?port={p.port}")
        check(got == f"{8 * 1024 * 1024}|nil|{8 * 1024 * 1024}",
              f"8 MiB sent to a slow reader, all of it: {got}")

        key, crt = make_cert(tmp)
        sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        sctx.load_cert_chain(crt, key)
        snis = []
        sctx.sni_callback = lambda sock, name, ctx: snis.append(name)
        p = Peer(h_echo_line, sctx)
        got = get(srv.port, f"/tls?port={p.port}&ca={crt}")
        check(got == "1|PING", f"TLS verified against the CA file: {got}")
        got = get(srv.port, f"/tls?port={p.port}")
        check(got.startswith("nil|tls: "), f"TLS against the system store fails: {got}")
        got = get(srv.port, f"/tls?port={p.port}&verify=0")
        check(got == "1|PING", f"TLS with verify = false: {got}")
        snis.clear()
        got = get(srv.port, f"/tls?port={p.port}&ca={crt}&sni=localhost")
        check(got == "1|PING" and snis == ["localhost"], f"SNI sent ({snis}): {got}")
        got = get(srv.port, f"/tls?port={p.port}&ca={crt}&host=localhost")
        check(got == "1|PING", f"TLS to a host name, verified: {got}")

        # A client that leaves while its hook waits on a silent peer.
        p = Peer(h_wait_close)
        c = socket.create_connection(("127.0.0.1", srv.port), timeout=10)
        c.sendall(f"GET /leave?port={p.port} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not p.events and threading.active_count() < 3:
            time.sleep(0.05)
        time.sleep(0.3)  # the hook waits on receive by now (order only; the checks wait below)
        c.close()
        while time.monotonic() < deadline and not p.events:
            time.sleep(0.05)
        check(p.events == [("eof", b"")], f"the waiting socket closed when its client left: {p.events}")
        left = "0"
        while time.monotonic() < deadline and left == "0":
            left = get(srv.port, "/left")
            time.sleep(0.05)
        check(left == "1", f"the hook's to-be-closed variable ran: {left}")
        check(srv.alive(), "the server is still up")
    finally:
        code = srv.stop()
        subprocess.run(["rm", "-rf", tmp])
    check(code == 0, f"clean exit ({code})")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
