"""tests/integration/redis_server.py: a redis-server for one test (not a test).

RedisServer() starts /usr/bin/redis-server on 127.0.0.1 with a free port, no persistence and a
private directory; stop() ends it (by its pid); start() again reuses the port. cli(*args) runs
one command through redis-cli and returns its output."""
import os
import socket
import subprocess
import tempfile
import time

REDIS = "/usr/bin/redis-server"
CLI = "/usr/bin/redis-cli"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    def __init__(self, port=None):
        self.port = port or free_port()
        self.dir = tempfile.TemporaryDirectory()
        self.proc = None
        self.start()

    @property
    def url(self):
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self):
        self.proc = subprocess.Popen(
            [REDIS, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir.name, "--protected-mode", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if self.cli("PING").strip() == "PONG":
                    return
            except subprocess.SubprocessError:
                pass
            time.sleep(0.05)
        raise RuntimeError("redis-server did not start")

    def cli(self, *args):
        return subprocess.run([CLI, "-h", "127.0.0.1", "-p", str(self.port)] + list(args),
                              capture_output=True, text=True, timeout=10).stdout

    def numsub(self, channel):
        out = self.cli("PUBSUB", "NUMSUB", channel).split()
        return int(out[1]) if len(out) == 2 else -1

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None
