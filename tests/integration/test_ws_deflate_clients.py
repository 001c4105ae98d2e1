#!/usr/bin/env python3
"""tests/integration/test_ws_deflate_clients.py: permessage-deflate against Python `websockets`.

Starts the real binary with tests/integration/ws_deflate_app.lua and drives it with Debian's
python3-websockets, whose permessage-deflate is an independent implementation that checks the
server's answer and inflates what the server sends: each parameter combination the client can
offer (client_max_window_bits with and without a value, server_max_window_bits 8..15, no
context takeover either way) against each preset, messages from 0 B to 1 MiB, fragmented
messages, many messages on one connection (context takeover), publish, a zip bomb (the
client compresses 16 MiB of zeros: the server closes 1009), and each preset over wss:// (a
second server on --tls-listen with a throw-away certificate from `openssl req`).

Run from the repo root with SWITCHYARD_BIN set, with /usr/bin/python3. Prints "ok - NAME" /
"not ok - NAME" per test and a final "N passed, N failed" line; exits non-zero on failure.
"""
import asyncio
import os
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import TIMEOUT, Server, case_registry, missing_bin, start_watchdog  # noqa: E402

ROOT = os.getcwd()
APP = os.path.join(ROOT, "tests", "integration", "ws_deflate_app.lua")
BIG_TIMEOUT = 60.0
WATCHDOG = 200
MIB = 1024 * 1024

TESTS, test = case_registry()


def eq(got, want, what):
    if got != want:
        g = got if not isinstance(got, (bytes, str)) or len(got) < 60 else f"<{len(got)}>"
        w = want if not isinstance(want, (bytes, str)) or len(want) < 60 else f"<{len(want)}>"
        raise AssertionError(f"{what}: want {w!r}, got {g!r}")


def chat(n, seed=0):
    out, size, i = [], 0, 0
    while size < n:
        s = (f'{{"type":"message","user":"user{(i + seed) % 11}","seq":{i},'
             f'"text":"hellö {i * 31 + seed} ✓"}}\n')
        out.append(s)
        size += len(s.encode())
        i += 1
    return "".join(out).encode()[:n].decode("utf-8", "ignore")


# Each combination a websockets client can offer: ClientPerMessageDeflateFactory arguments.
OFFERS = {
    "default offer": {"client_max_window_bits": True},
    "no parameters": {},
    "server_no_context_takeover": {"server_no_context_takeover": True},
    "client_no_context_takeover": {"client_no_context_takeover": True},
    "both no_context_takeover": {"server_no_context_takeover": True,
                                 "client_no_context_takeover": True},
    "server_max_window_bits=10": {"server_max_window_bits": 10},
    "server_max_window_bits=8": {"server_max_window_bits": 8},
    "client_max_window_bits=9": {"client_max_window_bits": 9},
    "all four": {"server_no_context_takeover": True, "client_no_context_takeover": True,
                 "server_max_window_bits": 12, "client_max_window_bits": 12},
}


def run_all(port, tls_port, cert):
    import websockets
    from websockets.exceptions import ConnectionClosed
    from websockets.extensions.permessage_deflate import (ClientPerMessageDeflateFactory,
                                                          PerMessageDeflate)

    url = f"ws://127.0.0.1:{port}"

    def connect(path, offer, **kw):
        kw.setdefault("max_size", None)
        kw.setdefault("open_timeout", TIMEOUT)
        kw.setdefault("close_timeout", TIMEOUT)
        factory = ClientPerMessageDeflateFactory(**offer)
        return websockets.connect(url + path, compression=None, extensions=[factory], **kw)

    async def roundtrip(ws, msg, timeout=TIMEOUT):
        await asyncio.wait_for(ws.send(msg), timeout)
        return await asyncio.wait_for(ws.recv(), timeout)

    def deflate_of(ws):
        ext = [e for e in ws.extensions if isinstance(e, PerMessageDeflate)]
        if not ext:
            raise AssertionError("permessage-deflate was not agreed")
        return ext[0]

    for preset in ("shared", "small", "default"):
        for oname, offer in OFFERS.items():
            @test(f"{preset}: {oname}: sizes, fragments and 30 messages")
            async def _(preset=preset, offer=offer):
                async with connect(f"/echo/{preset}", offer) as ws:
                    deflate_of(ws)
                    for n in (0, 1, 63, 64, 1000, 65536, 300000, MIB):
                        msg = chat(n, n)
                        eq(await roundtrip(ws, msg, BIG_TIMEOUT), msg, f"text {n}")
                        b = msg.encode()
                        eq(await roundtrip(ws, b, BIG_TIMEOUT), b, f"binary {n}")
                    frags = [chat(3000, 1), chat(10, 2), "", chat(70000, 3)]
                    eq(await roundtrip(ws, frags), "".join(frags), "fragmented")
                    for i in range(30):
                        m = chat(100 + i * 10, i)
                        eq(await roundtrip(ws, m), m, f"message {i}")

    @test("agreed parameters seen by the client, per preset")
    async def _():
        async with connect("/echo/shared", OFFERS["default offer"]) as ws:
            d = deflate_of(ws)
            eq((d.remote_no_context_takeover, d.local_no_context_takeover), (True, True),
               "shared: no context takeover")
        async with connect("/echo/small", OFFERS["default offer"]) as ws:
            d = deflate_of(ws)
            eq((d.remote_max_window_bits, d.local_max_window_bits), (11, 11), "small: windows")
        async with connect("/echo/default", OFFERS["default offer"]) as ws:
            d = deflate_of(ws)
            eq((d.remote_no_context_takeover, d.local_no_context_takeover,
                d.remote_max_window_bits, d.local_max_window_bits), (False, False, 15, 15),
               "default")
        async with connect("/echo/off", OFFERS["default offer"]) as ws:
            eq(ws.response_headers.get("Sec-WebSocket-Extensions"), None, "off")

    @test("publish: compressed and plain subscribers all get every message")
    async def _():
        conns = [connect("/room/shared", {}), connect("/room/shared", {}),
                 connect("/room/small", OFFERS["default offer"]), connect("/room/off", {})]
        wss = [await c.__aenter__() for c in conns]
        try:
            await asyncio.sleep(0.2)
            for i in range(10):
                m = chat(500, i)
                await wss[i % 4].send(m)
                for ws in wss:
                    eq(await asyncio.wait_for(ws.recv(), TIMEOUT), m, f"published {i}")
        finally:
            for c in conns:
                await c.__aexit__(None, None, None)

    @test("zip bomb: 16 MiB of zeros, compressed by the client, closes 1009")
    async def _():
        async with connect("/echo/default", {}) as ws:
            await ws.send(bytes(16 * MIB))
            try:
                await asyncio.wait_for(ws.recv(), BIG_TIMEOUT)
                raise AssertionError("the bomb was echoed")
            except ConnectionClosed as e:
                eq(e.rcvd.code if e.rcvd else None, 1009, "close code")
        async with connect("/echo/default", {}) as ws:
            eq(await roundtrip(ws, "still serving"), "still serving", "echo")

    @test("wss: each preset over TLS, with Chromium's offer")
    async def _():
        ctx = ssl.create_default_context(cafile=cert)
        for preset in ("shared", "small", "default"):
            async with websockets.connect(f"wss://localhost:{tls_port}/echo/{preset}", ssl=ctx,
                                          max_size=None, open_timeout=TIMEOUT,
                                          close_timeout=TIMEOUT) as ws:
                deflate_of(ws)
                for n in (10, 1000, 200000):
                    msg = chat(n, n)
                    eq(await roundtrip(ws, msg), msg, f"wss {preset} {n}")

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
    tmp = tempfile.mkdtemp(prefix="sy-deflate.")
    cert, key = os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                    "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
                    "-days", "2", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
                   check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=TIMEOUT * 4)
    srv = Server(APP, args=["--tls-listen", "127.0.0.1:0", "--cert", cert, "--key", key])
    start_watchdog(srv, WATCHDOG)
    passed = failed = 0
    try:
        passed, failed = run_all(srv.port, srv.tls_port, cert)
    except ImportError as e:
        failed += 1
        print(f"not ok - import websockets (Debian python3-websockets): {e}")
    finally:
        alive = srv.alive()
        code = srv.stop()
        signal.alarm(0)
        shutil.rmtree(tmp, ignore_errors=True)
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
