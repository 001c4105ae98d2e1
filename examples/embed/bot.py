#!/usr/bin/python3
"""A bot player for the game host (examples/embed/game.c).

Connects to ws://HOST:PORT/game, waits until it sees --wait-players players in a snapshot, then
for --seconds counts the snapshots it receives while sending input (text "move DX DY", every
third one as two binary bytes handled in C). With --spin it then sends "spin", which makes the
Lua handler loop until the host's time budget stops it (the app closes this connection with
1011); with --linger N it goes on receiving for N more seconds. Prints one JSON line:
  id, received (snapshots in the window), ticks (host ticks in the window), host_rate (ticks per
  second of the host's clock), max_players, max_gap (largest gap between consecutive snapshot
  timestamps, host clock, over the whole run), players_at_end, close_code.
"""
import argparse
import asyncio
import json
import random
import struct
import sys
import time

import websockets


async def run(a):
    out = {"id": None, "received": 0, "ticks": 0, "host_rate": 0.0, "max_players": 0,
           "max_gap": 0.0, "players_at_end": None, "close_code": None, "seen_ids": []}
    seen = set()
    last_t = None
    async with websockets.connect(a.url, max_size=1 << 20, ping_interval=None) as ws:
        welcome = await asyncio.wait_for(ws.recv(), 30)
        assert welcome.startswith("welcome "), welcome
        out["id"] = int(welcome.split()[1])

        async def receive(deadline, window):
            nonlocal last_t
            first = last = None
            count = 0
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    msg = await asyncio.wait_for(ws.recv(), left)
                except asyncio.TimeoutError:
                    break
                if not isinstance(msg, str) or not msg.startswith("{"):
                    continue
                snap = json.loads(msg)
                ids = [p["id"] for p in snap["players"]]
                seen.update(ids)
                out["max_players"] = max(out["max_players"], len(ids))
                out["players_at_end"] = len(ids)
                if last_t is not None:
                    out["max_gap"] = max(out["max_gap"], snap["t"] - last_t)
                last_t = snap["t"]
                if window is not None:
                    if len(ids) >= a.wait_players and window == "wait":
                        return True
                    if window == "count":
                        count += 1
                        first = first or snap
                        last = snap
            if window == "count":
                out["received"] = count
                if first and last and last["t"] > first["t"]:
                    out["ticks"] = last["tick"] - first["tick"]
                    out["host_rate"] = out["ticks"] / (last["t"] - first["t"])
            return False

        async def send_input(deadline):
            i = 0
            while time.monotonic() < deadline:
                dx, dy = random.randint(-3, 3), random.randint(-3, 3)
                if i % 3 == 2:
                    await ws.send(struct.pack("bb", dx, dy))
                else:
                    await ws.send(f"move {dx} {dy}")
                i += 1
                await asyncio.sleep(0.1)

        if not await receive(time.monotonic() + 30, "wait"):
            raise SystemExit(f"never saw {a.wait_players} players")
        end = time.monotonic() + a.seconds
        sender = asyncio.create_task(send_input(end))
        await receive(end, "count")
        await sender
        if a.spin:
            await ws.send("spin")
        try:
            await receive(time.monotonic() + a.linger, None)
        except websockets.ConnectionClosed:
            pass
        if ws.close_code is not None:
            out["close_code"] = ws.close_code
    out["seen_ids"] = sorted(seen)
    print(json.dumps(out), flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True)
    p.add_argument("--seconds", type=float, default=5)
    p.add_argument("--wait-players", type=int, default=2)
    p.add_argument("--spin", action="store_true")
    p.add_argument("--linger", type=float, default=0)
    asyncio.run(run(p.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
