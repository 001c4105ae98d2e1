#!/usr/bin/env python3
"""tests/integration/test_topics_workers.py: --workers 2 shares topics.

Six (or more) WebSocket clients of tests/integration/topics_app.lua join one room, spread over
both workers (each client learns its worker's pid from "hello PID"). Checks: the presence sums
reach the number of clients at every client (each worker's announcements reach the other's
clients); publishes from clients of both workers reach every client once each, in order per
publisher (sy.publish, ws:publish, binary); sy.subscribers stays local; a worker killed and
restarted by the supervisor serves the room again. Real binary, loopback, bounded waits.
"""
import asyncio
import os
import signal
import sys
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, missing_bin, start_watchdog  # noqa: E402
from topics_clients import Client, check_stream, count_from, until  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "topics_app.lua")
N_MSGS = 50
passed = failed = 0


def report(ok, name, err=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok -", name)
    else:
        failed += 1
        print("not ok -", name, err)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return sorted(int(x) for x in f.read().split())
    except OSError:
        return []


async def spread(port, want, room="room", limit=60):
    """At least `want` clients, with both workers among them (connects up to `limit`)."""
    clients = []
    while len(clients) < want or len({c.pid for c in clients}) < 2:
        if len(clients) >= limit:
            raise AssertionError(f"{limit} connections all went to pid {clients[0].pid}")
        clients.append(await Client.open(port, room, f"c{len(clients)}"))
    return clients


async def main(srv):
    port = srv.port
    deadline = time.monotonic() + 30
    while len(children(srv.proc.pid)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    clients = await spread(port, 6)
    n = len(clients)
    pids = {c.pid for c in clients}

    name = f"{n} clients on both workers: each sees {n} members"
    try:
        await until(lambda: all(c.members() == n and len(c.here) == 2 for c in clients), name)
        report(True, name)
    except AssertionError as e:
        report(False, name, f"{e}; {[dict(c.here) for c in clients]}")

    name = "sy.subscribers is this process's count"
    try:
        by_pid = {p: sum(1 for c in clients if c.pid == p) for p in pids}
        for c in clients:
            await c.send("count")
        await until(lambda: all(any(isinstance(m, str) and m.startswith("count ") for m in c.msgs)
                                for c in clients), "count answers")
        for c in clients:
            got = [m for m in c.msgs if isinstance(m, str) and m.startswith("count ")][0]
            assert got == f"count {by_pid[c.pid]}", (c.pid, got, by_pid)
            c.msgs.clear()
        report(True, name)
    except AssertionError as e:
        report(False, name, str(e))

    # Publishers on both workers, each sending N_MSGS in a row.
    pubs = [next(c for c in clients if c.pid == p) for p in sorted(pids)]
    pubs.append(next(c for c in clients if c not in pubs))
    tags = [f"p{i}" for i in range(len(pubs))]
    name = f"{len(pubs)} publishers x {N_MSGS}: every client gets each once, in order"
    try:
        async def burst(c, tag):
            for i in range(1, N_MSGS + 1):
                await c.send(f"pub {tag}-{i}")
        await asyncio.gather(*(burst(c, t) for c, t in zip(pubs, tags)))
        total = len(pubs) * N_MSGS
        await until(lambda: all(count_from(c.msgs, tags) >= total for c in clients),
                    lambda: f"{total} messages at each client "
                    f"(have {[count_from(c.msgs, tags) for c in clients]})")
        await asyncio.sleep(0.5)  # anything delivered twice would have come by now
        for c in clients:
            check_stream(c.msgs, tags, N_MSGS, f"client {c.name} (pid {c.pid})")
        report(True, name)
    except AssertionError as e:
        report(False, name, str(e))
    for c in clients:
        c.msgs.clear()

    name = "ws:publish reaches every other client, on both workers; binary stays binary"
    try:
        src = clients[0]
        await src.send("wspub only-1")
        await src.send("bin only-2")
        others = clients[1:]
        await until(lambda: all(len(c.msgs) >= 2 for c in others), "two messages at the others")
        await until(lambda: len(src.msgs) >= 1, "the binary one at the sender")
        await asyncio.sleep(0.3)
        for c in others:
            assert c.msgs == ["only-1", b"only-2"], (c.name, c.msgs)
        assert src.msgs == [b"only-2"], src.msgs
        report(True, name)
    except AssertionError as e:
        report(False, name, str(e))
    for c in clients:
        c.msgs.clear()

    name = "a worker killed and restarted serves the room again"
    try:
        victim = int(clients[0].pid)
        before = children(srv.proc.pid)
        os.kill(victim, signal.SIGKILL)
        await until(lambda: len(children(srv.proc.pid)) == 2 and
                    children(srv.proc.pid) != before, "a successor worker", 30)
        successor = str(next(p for p in children(srv.proc.pid) if p not in before))
        survivors = [c for c in clients if c.pid != str(victim)]
        fresh = []
        for _ in range(60):
            c = await Client.open(port, "room", f"f{len(fresh)}")
            fresh.append(c)
            if c.pid == successor:
                break
        assert any(c.pid == successor for c in fresh), "no connection reached the successor"
        newc = next(c for c in fresh if c.pid == successor)
        await survivors[0].send("pub old-1")
        await newc.send("pub new-1")
        everyone = survivors + fresh
        await until(lambda: all(count_from(c.msgs, ["old", "new"]) >= 2 for c in everyone),
                    "both messages everywhere")
        await asyncio.sleep(0.3)
        for c in everyone:
            assert sorted(m for m in c.msgs if m in ("old-1", "new-1")) == ["new-1", "old-1"], \
                (c.name, c.msgs)
        report(True, name)
        clients = survivors + fresh
    except AssertionError as e:
        report(False, name, str(e))
    for c in clients:
        try:
            await c.close()
        except Exception:
            pass


def run():
    if missing_bin():
        return 1
    srv = Server(APP, args=["--workers", "2"])
    start_watchdog(srv, 240)
    try:
        asyncio.run(main(srv))
    except Exception:
        report(False, "run", traceback.format_exc())
    finally:
        code = srv.stop()
        signal.alarm(0)
    if code != 0:
        report(False, "SIGTERM stops with exit 0", f"exit {code}; stderr {srv.stderr()[-2000:]}")
    if "Sanitizer" in srv.stderr() or "while stopping" in srv.stderr():
        report(False, "clean stderr", srv.stderr()[-3000:])
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
