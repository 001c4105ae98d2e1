#!/usr/bin/env python3
"""tests/integration/test_ws_clients.py: the WebSocket layer against Python `websockets`.

Starts the real binary on 127.0.0.1 port 0 with tests/integration/ws_clients_app.lua and drives
it with Debian's python3-websockets (a real, independent client implementation): text and
binary messages from 0 B to 16 MiB, fragmented sends (websockets sends an iterable as one
fragmented message), close codes in both directions, subprotocol negotiation, client pings and
the server's keepalive pings, several clients at once.

Run from the repo root with SWITCHYARD_BIN set, with /usr/bin/python3 (Debian's, which has
websockets). Every wait is bounded. Prints "ok - NAME" / "not ok - NAME" per test and a final
"N passed, N failed" line; exits non-zero on failure (a missing websockets module fails too).
"""
import asyncio
import os
import signal
import socket
import sys
import time
import traceback

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, case_registry, missing_bin, start_watchdog  # noqa: E402

ROOT = os.getcwd()
APP = os.path.join(ROOT, "tests", "integration", "ws_clients_app.lua")
BIG_TIMEOUT = 60.0
WATCHDOG = 270
MIB = 1024 * 1024


def http_get(port, path):
    """A plain GET; returns (status, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body.decode("utf-8", "replace")


def short(v):
    if isinstance(v, (bytes, str)) and len(v) > 48:
        return f"<{type(v).__name__} of {len(v)}: {v[:16]!r}...>"
    return repr(v)


def eq(got, want, what):
    if got != want:
        raise AssertionError(f"{what}: want {short(want)}, got {short(got)}")


TESTS, test = case_registry()


def run_all(port):
    import websockets  # noqa: F401  (imported here so that its absence is one failed test)
    from websockets.exceptions import ConnectionClosed

    url = f"ws://127.0.0.1:{port}"

    def connect(path="/echo", **kw):
        kw.setdefault("max_size", None)
        kw.setdefault("open_timeout", TIMEOUT)
        kw.setdefault("close_timeout", TIMEOUT)
        return websockets.connect(url + path, **kw)

    async def roundtrip(ws, msg, timeout=TIMEOUT):
        await asyncio.wait_for(ws.send(msg), timeout)
        return await asyncio.wait_for(ws.recv(), timeout)

    def text_of(n):
        unit = "aé€😀"  # 1 + 2 + 3 + 4 bytes in UTF-8
        s = unit * (n // 10)
        return s + "x" * (n - len(s.encode()))

    sizes = [0, 1, 125, 126, 65535, 65536, MIB, 16 * MIB]
    for n in sizes:
        @test(f"echo text {n} bytes")
        async def _(n=n):
            async with connect() as ws:
                msg = text_of(n)
                eq(len(msg.encode()), n, "message size")
                eq(await roundtrip(ws, msg, BIG_TIMEOUT), msg, "echo")

        @test(f"echo binary {n} bytes")
        async def _(n=n):
            async with connect() as ws:
                msg = os.urandom(n)
                eq(await roundtrip(ws, msg, BIG_TIMEOUT), msg, "echo")

    @test("echo many messages in order on one connection")
    async def _():
        async with connect() as ws:
            msgs = [f"m{i}" if i % 2 else bytes([i % 256]) * i for i in range(200)]
            for m in msgs:
                await ws.send(m)
            for i, m in enumerate(msgs):
                eq(await asyncio.wait_for(ws.recv(), TIMEOUT), m, f"message {i}")

    @test("fragmented text (iterable of 3 fragments)")
    async def _():
        async with connect() as ws:
            eq(await roundtrip(ws, ["frag", "mén", "ted 😀"]), "fragménted 😀", "echo")

    @test("fragmented binary (iterable of 5 fragments, one empty)")
    async def _():
        async with connect() as ws:
            parts = [b"\x00\x01", b"", b"\xff" * 1000, b"x", b"\x02"]
            eq(await roundtrip(ws, parts), b"".join(parts), "echo")

    @test("fragmented text split inside code points")
    async def _():
        # websockets encodes each str fragment on its own; split bytes as binary is not
        # text, so split the characters into single-character fragments instead.
        async with connect() as ws:
            msg = "κόσμε😀€"
            eq(await roundtrip(ws, list(msg)), msg, "echo")

    @test("16 MiB binary in 64-byte fragments")
    async def _():
        async with connect() as ws:
            data = os.urandom(16 * MIB)
            parts = (data[i:i + 64] for i in range(0, len(data), 64))
            eq(await roundtrip(ws, parts, BIG_TIMEOUT), data, "echo")

    @test("16 MiB text in 64 KiB fragments")
    async def _():
        async with connect() as ws:
            data = "z" * (16 * MIB)
            parts = (data[i:i + 65536] for i in range(0, len(data), 65536))
            eq(await roundtrip(ws, parts, BIG_TIMEOUT), data, "echo")

    @test("message over 16 MiB -> server closes 1009")
    async def _():
        async with connect() as ws:
            try:
                await asyncio.wait_for(ws.send(b"\x00" * (16 * MIB + 1)), BIG_TIMEOUT)
                await asyncio.wait_for(ws.recv(), BIG_TIMEOUT)
            except ConnectionClosed as e:
                eq(e.rcvd.code if e.rcvd else None, 1009, "close code from the server")
                return
            raise AssertionError("connection still open after a 16 MiB + 1 message")

    for code, reason in ((1000, "bye"), (1001, "going"), (3000, "app"), (4001, "custom é")):
        @test(f"client closes with {code} -> server echoes {code}, app sees code and reason")
        async def _(code=code, reason=reason):
            async with connect() as ws:
                eq(await roundtrip(ws, "before close"), "before close", "echo")
                await asyncio.wait_for(ws.close(code, reason), TIMEOUT)
                eq(ws.close_code, code, "close code echoed by the server")
            status, body = http_get(port, "/last-close")
            eq((status, body), (200, f"code={code} reason={reason}"), "/last-close")

    @test("client closes without a code -> app sees 1005")
    async def _():
        from websockets.frames import Close
        async with connect() as ws:
            # An empty close frame: websockets' public close() always sends a code.
            await asyncio.wait_for(ws.write_close_frame(Close(1005, ""), b""), TIMEOUT)
            await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
            eq(ws.close_code, 1005, "server's answer to an empty close (empty too)")
        status, body = http_get(port, "/last-close")
        eq((status, body), (200, "code=1005 reason="), "/last-close")

    for code, reason in ((1000, "done"), (1001, "away"), (3000, "x"), (4999, "last_code")):
        @test(f"server closes with {code} -> client gets {code} and the reason")
        async def _(code=code, reason=reason):
            async with connect(f"/close?code={code}&reason={reason}") as ws:
                try:
                    await ws.send("close please")
                    msg = await asyncio.wait_for(ws.recv(), TIMEOUT)
                except ConnectionClosed as e:
                    eq((e.rcvd.code, e.rcvd.reason) if e.rcvd else None, (code, reason),
                       "received close")
                    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
                    return
                raise AssertionError(f"got a message instead of a close: {msg!r}")

    for offered, chosen in ((["v1.switchyard"], "v1.switchyard"),
                            (["v1.switchyard", "v2.switchyard"], "v2.switchyard"),
                            (["v2.switchyard", "v1.switchyard"], "v2.switchyard"),
                            (["other", "v1.switchyard"], "v1.switchyard"),
                            (["other"], None),
                            (None, None)):
        @test(f"subprotocol: client offers {offered} -> {chosen}")
        async def _(offered=offered, chosen=chosen):
            kw = {"subprotocols": offered} if offered else {}
            async with connect("/info", **kw) as ws:
                eq(ws.subprotocol, chosen, "negotiated subprotocol")
                msg = await roundtrip(ws, "info?")
                eq(msg, f"path=/info subprotocol={chosen or 'none'}", "ws.subprotocol in Lua")

    @test("ping from the client -> pong, and the app's ping handler sees the payload")
    async def _():
        async with connect("/keepalive") as ws:
            waiter = await ws.ping(b"client-ping")
            await asyncio.wait_for(waiter, TIMEOUT)
            eq(await asyncio.wait_for(ws.recv(), TIMEOUT), "ping:client-ping", "ping handler")

    @test("ping on /echo -> pong with the same payload")
    async def _():
        async with connect() as ws:
            for payload in (b"", b"a", bytes(range(125))):
                waiter = await ws.ping(payload)
                await asyncio.wait_for(waiter, TIMEOUT)

    @test("server keepalive ping (ping_interval 0.2 s) -> client pong reaches the app")
    async def _():
        async with connect("/keepalive", ping_interval=None) as ws:
            msg = await asyncio.wait_for(ws.recv(), 3)
            eq(msg, "pong:", "pong handler message")

    @test("20 clients at once, 50 messages each")
    async def _():
        async def one(i):
            async with connect() as ws:
                for j in range(50):
                    m = f"client {i} message {j}"
                    eq(await roundtrip(ws, m), m, "echo")
        await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(20))), BIG_TIMEOUT)

    @test("permessage-deflate offered by the client is declined (no extension)")
    async def _():
        async with connect(compression="deflate") as ws:
            eq(ws.response_headers.get("Sec-WebSocket-Extensions"), None, "extensions header")
            eq(await roundtrip(ws, "plain " * 100), "plain " * 100, "echo")

    passed = failed = 0
    only = os.environ.get("WS_CASE")
    for name, fn in TESTS:
        if only and only not in name:
            continue
        t0 = time.monotonic()
        try:
            asyncio.run(asyncio.wait_for(fn(), BIG_TIMEOUT + 10))
            passed += 1
            print(f"ok - {name} ({time.monotonic() - t0:.2f} s)", flush=True)
        except Exception as e:
            failed += 1
            print(f"not ok - {name}: {type(e).__name__}: {e}", flush=True)
            if os.environ.get("WS_TRACE"):
                traceback.print_exc()
    return passed, failed


def main():
    if missing_bin():
        return 1
    srv = Server(APP)
    start_watchdog(srv, WATCHDOG)
    passed = failed = 0
    try:
        passed, failed = run_all(srv.port)
    except ImportError as e:
        failed += 1
        print(f"not ok - import websockets (Debian python3-websockets): {e}")
    finally:
        alive = srv.alive()
        code = srv.stop()
        signal.alarm(0)
    if not alive:
        failed += 1
        print(f"not ok - the server died during the run; stderr: {srv.stderr()[-2000:]}")
    elif code != 0:
        failed += 1
        print(f"not ok - server exit code {code}, want 0; stderr: {srv.stderr()[-2000:]}")
    else:
        passed += 1
        print("ok - server exits 0 on SIGTERM")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
