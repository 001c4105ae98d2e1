"""tests/integration/topics_clients.py: WebSocket clients of topics_app.lua (not a test).

A Client joins a room on one server, remembers the worker pid of its "hello", collects what the
room sends (presence lines "here PID N" apart) and waits, bounded, for a condition."""
import asyncio
import time

import websockets

WAIT = 30.0  # seconds: bound of one wait; never reached when things work


class Client:
    def __init__(self, ws, pid, name):
        self.ws = ws
        self.pid = pid
        self.name = name
        self.msgs = []  # everything but presence, in arrival order
        self.here = {}  # pid -> the latest local count that process announced
        self.task = asyncio.get_running_loop().create_task(self._read())

    @classmethod
    async def open(cls, port, room="room", name="c"):
        ws = await websockets.connect(f"ws://127.0.0.1:{port}/ws?room={room}", max_size=None,
                                      open_timeout=WAIT, ping_interval=None)
        hello = await asyncio.wait_for(ws.recv(), WAIT)
        assert hello.startswith("hello "), hello
        return cls(ws, hello.split()[1], name)

    async def _read(self):
        try:
            async for m in self.ws:
                if isinstance(m, str) and m.startswith("here "):
                    _, pid, n = m.split()
                    self.here[pid] = int(n)
                else:
                    self.msgs.append(m)
        except websockets.ConnectionClosed:
            pass

    def members(self):
        return sum(self.here.values())

    async def send(self, text):
        await self.ws.send(text)

    async def close(self):
        await self.ws.close()
        self.task.cancel()


async def until(pred, what, timeout=WAIT):
    """Waits until pred() is true; raises AssertionError naming `what` (a string, or a function
    that makes one) after timeout s."""
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + (what() if callable(what) else what))
        await asyncio.sleep(0.02)


def check_stream(msgs, publishers, count, what):
    """Every message "P-i" from each publisher P, i = 1..count, exactly once and in order."""
    seen = {p: [] for p in publishers}
    for m in msgs:
        if isinstance(m, str) and "-" in m:
            p, _, i = m.rpartition("-")
            if p in seen:
                seen[p].append(int(i))
    for p in publishers:
        if seen[p] != list(range(1, count + 1)):
            got = seen[p]
            raise AssertionError(f"{what}: from {p}: {len(got)} messages, want 1..{count} "
                                 f"once each in order; first ones {got[:10]}")


def count_from(msgs, publishers):
    n = 0
    for m in msgs:
        if isinstance(m, str) and m.rpartition("-")[0] in publishers:
            n += 1
    return n
