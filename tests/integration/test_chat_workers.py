#!/usr/bin/env python3
"""tests/integration/test_chat_workers.py: examples/chat with --workers 2 keeps one room.

Six (or more) WebSocket clients of the chat example, spread over both workers (each event
names its process). Each client adds up the latest member count of every process, as the page
does: all reach the number of clients; a message from one reaches every client once.
"""
import asyncio
import json
import os
import sys
import time
import traceback

import websockets

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, missing_bin, start_watchdog  # noqa: E402
from topics_clients import WAIT, until  # noqa: E402

APP = os.path.join(os.getcwd(), "examples", "chat", "server.lua")
passed = failed = 0


def report(ok, name, err=""):
    global passed, failed
    passed += ok
    failed += not ok
    print("ok -" if ok else "not ok -", name, err)


class Member:
    def __init__(self, ws, process):
        self.ws, self.process = ws, process
        self.counts, self.texts = {}, []
        self.task = asyncio.get_running_loop().create_task(self.read())

    async def read(self):
        try:
            async for raw in self.ws:
                m = json.loads(raw)
                self.counts[m["process"]] = m["members"]
                if m["type"] == "message":
                    self.texts.append(m["text"])
        except websockets.ConnectionClosed:
            pass


async def join(port, name):
    ws = await websockets.connect(f"ws://127.0.0.1:{port}/chat?name={name}", open_timeout=WAIT)
    first = json.loads(await asyncio.wait_for(ws.recv(), WAIT))
    assert first["type"] == "join" and first["name"] == name, first
    m = Member(ws, first["process"])
    m.counts[first["process"]] = first["members"]
    return m


async def main(port):
    members = []
    while len(members) < 6 or len({m.process for m in members}) < 2:
        assert len(members) < 60, "connections all went to one worker"
        members.append(await join(port, f"user{len(members)}"))
    n = len(members)
    name = f"{n} members on two workers: each counts {n}"
    try:
        await until(lambda: all(sum(m.counts.values()) == n for m in members),
                    lambda: f"counts {[m.counts for m in members]}")
        report(True, name)
    except AssertionError as e:
        report(False, name, str(e))
    name = "a message reaches every member once"
    try:
        await members[-1].ws.send("hello room")
        await until(lambda: all(m.texts for m in members), "the message everywhere")
        await asyncio.sleep(0.3)
        assert all(m.texts == ["hello room"] for m in members), [m.texts for m in members]
        report(True, name)
    except AssertionError as e:
        report(False, name, str(e))
    for m in members:
        await m.ws.close()


def run():
    if missing_bin():
        return 1
    srv = Server(APP, args=["--workers", "2"])
    start_watchdog(srv, 200)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with open(f"/proc/{srv.proc.pid}/task/{srv.proc.pid}/children") as f:
                if len(f.read().split()) == 2:
                    break
            time.sleep(0.05)
        asyncio.run(main(srv.port))
    except Exception:
        report(False, "run", traceback.format_exc())
    finally:
        code = srv.stop()
    report(code == 0 and "Sanitizer" not in srv.stderr(), "SIGTERM: exit 0, clean stderr",
           f"exit {code}: {srv.stderr()[-1500:]}" if code != 0 else "")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
