"""tests/integration/redisproc.py: a real redis-server on a free loopback port, started and
stopped by a test (not a test). Only the PID started here is ever signalled.

    from redisproc import Redis
    rd = Redis()                 # rd.port; rd.cmd("SET", "k", "v") -> b"+OK"
    rd.stop()
"""
import socket
import subprocess
import tempfile
import time


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Redis:
    """redis-server without persistence; DEBUG is allowed from loopback (to make it slow)."""

    def __init__(self, port=None, extra=()):
        for _ in range(5):
            self.port = port or free_port()
            self.log = tempfile.TemporaryFile()
            self.proc = subprocess.Popen(
                ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--daemonize", "no", "--enable-debug-command", "local",
                 *extra],
                stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and self.proc.poll() is None:
                try:
                    if self.cmd("PING") == b"+PONG":
                        return
                except OSError:
                    pass
                time.sleep(0.05)
            out = self.output()
            self.stop()
            if port or b"in use" not in out.encode():
                raise RuntimeError(f"redis-server did not start on {self.port}: {out}")
        raise RuntimeError("redis-server: no free port after 5 tries")

    def output(self):
        from sytest import read_shared  # beside this file, on the tests' path
        return read_shared(self.log)

    def cmd(self, *args, timeout=5.0):
        """Sends one command, returns the first line of the reply (bytes, CRLF stripped)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(encode(args))
            buf = b""
            while b"\r\n" not in buf:
                chunk = s.recv(65536)
                if not chunk:
                    break
                buf += chunk
            return buf.split(b"\r\n", 1)[0]

    def send_only(self, *args):
        """Sends a command on a connection of its own and returns that socket unread (e.g.
        DEBUG SLEEP, which holds the server while the caller does other things)."""
        s = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        s.sendall(encode(args))
        return s

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


def encode(args):
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)
