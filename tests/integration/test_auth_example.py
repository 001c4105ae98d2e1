#!/usr/bin/python3
"""examples/auth against a real redis-server started here: a WebSocket opens only for a session
found in Redis (query token or cookie), unknown -> 401, Redis down -> 503 with a log line, and
while one client's check waits on a slow Redis (DEBUG SLEEP) other clients are served."""
import asyncio
import os
import select
import socket
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, missing_bin, start_watchdog  # noqa: E402
from redisproc import Redis  # noqa: E402
import websockets  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
APP = os.path.join(ROOT, "examples", "auth", "app.lua")
passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
        print(f"ok - {what}")
    else:
        failed += 1
        print(f"not ok - {what}")


def upgrade_request(path, cookie=None):
    lines = [f"GET {path} HTTP/1.1", "Host: x", "Upgrade: websocket", "Connection: Upgrade",
             "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
    if cookie:
        lines.append(f"Cookie: {cookie}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def status_of(port, req, timeout=TIMEOUT):
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
        s.sendall(req)
        data = b""
        while b"\r\n" not in data:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        parts = data.split(b" ", 2)
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


async def ws_session(port, path, **kw):
    async with websockets.connect(f"ws://127.0.0.1:{port}{path}", **kw) as ws:
        hello = await asyncio.wait_for(ws.recv(), TIMEOUT)
        await ws.send("hi")
        echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
        return hello, echo


def main():
    if missing_bin():
        return 1
    rd = Redis()
    os.environ["AUTH_REDIS"] = f"127.0.0.1:{rd.port}"
    os.environ["AUTH_REDIS_TIMEOUT"] = "10"
    srv = Server(APP)
    start_watchdog(srv, 90)
    try:
        rd.cmd("SET", "session:abc", "alice")
        rd.cmd("SET", "session:c00k", "bob")
        got = asyncio.run(ws_session(srv.port, "/ws?token=abc"))
        check(got == ("hello alice", "alice: hi"), f"a known query token opens the WebSocket: {got}")
        got = asyncio.run(ws_session(srv.port, "/ws", extra_headers={"Cookie": "session=c00k"}))
        check(got == ("hello bob", "bob: hi"), f"a known session cookie opens the WebSocket: {got}")
        check(status_of(srv.port, upgrade_request("/ws?token=nope")) == 401, "an unknown token: 401")
        check(status_of(srv.port, upgrade_request("/ws")) == 401, "no token: 401")

        # Redis busy for 3 s: one client's check waits, another client is served meanwhile.
        sleeper = rd.send_only("DEBUG", "SLEEP", "3")
        waiting = socket.create_connection(("127.0.0.1", srv.port), timeout=TIMEOUT)
        waiting.sendall(upgrade_request("/ws?token=abc"))
        select.select([], [], [], 0.3)  # let the check reach Redis (order, not speed, is checked)
        health = status_of(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        pending = not select.select([waiting], [], [], 0)[0]
        check(health == 200 and pending,
              f"GET /health answered ({health}) while another client's check waits ({pending})")
        waiting.settimeout(15)
        first = waiting.recv(4096)
        check(first.startswith(b"HTTP/1.1 101"), f"the waiting check ends in 101: {first[:40]!r}")
        waiting.close()
        sleeper.close()

        rd.stop()
        code = status_of(srv.port, upgrade_request("/ws?token=abc"), timeout=20)
        check(code == 503, f"Redis down: 503 ({code})")
        log = srv.stderr()
        check("session store unavailable" in log, "Redis down: a log line names the cause")
        check(status_of(srv.port, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n") == 200,
              "the server goes on serving")
    finally:
        srv.stop()
        rd.stop()
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
