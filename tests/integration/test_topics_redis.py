#!/usr/bin/env python3
"""tests/integration/test_topics_redis.py: topics across processes through Redis (--redis).

Starts one redis-server (tests/integration/redis_server.py) and switchyard processes of
tests/integration/topics_app.lua on loopback. Checks: two processes on different ports share a
room: subscribers on both get every message from publishers on both, once each, in order per
publisher; a topic's channel is subscribed while it has local subscribers and unsubscribed
when the last leaves (PUBSUB from the test); Redis killed mid-test: local delivery goes on and
a warning is logged; Redis restarted on the same port: subscriptions are restored and
delivery across processes resumes; --redis with --workers 2 beside a single process: no
message lost or doubled. A bad URL: exit 1.
"""
import asyncio
import os
import signal
import subprocess
import sys
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import BIN, Server, missing_bin  # noqa: E402
from redis_server import RedisServer  # noqa: E402
from topics_clients import Client, check_stream, count_from, until  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "topics_app.lua")
N_MSGS = 40
passed = failed = 0


def report(ok, name, err=""):
    global passed, failed
    if ok:
        passed += 1
        print("ok -", name)
    else:
        failed += 1
        print("not ok -", name, err)


async def step(name, coro):
    try:
        await coro
        report(True, name)
    except AssertionError as e:
        report(False, name, str(e))


async def exchange(clients, pubs, tags, what):
    """Each publisher sends N_MSGS; every client must get all, once each, in order."""
    for c in clients:
        c.msgs.clear()

    async def burst(c, tag):
        for i in range(1, N_MSGS + 1):
            await c.send(f"pub {tag}-{i}")
    await asyncio.gather(*(burst(c, t) for c, t in zip(pubs, tags)))
    total = len(tags) * N_MSGS
    await until(lambda: all(count_from(c.msgs, tags) >= total for c in clients),
                lambda: f"{what}: {total} messages at each client "
                f"(have {[count_from(c.msgs, tags) for c in clients]})")
    await asyncio.sleep(0.5)
    for c in clients:
        check_stream(c.msgs, tags, N_MSGS, f"{what}: client {c.name}")


async def wait_numsub(redis, channel, n, what):
    await until(lambda: redis.numsub(channel) == n,
                lambda: f"{what}: NUMSUB {channel} = {n} (is {redis.numsub(channel)})")


async def two_processes(redis):
    a = Server(APP, args=["--redis", redis.url])
    b = Server(APP, args=["--redis", redis.url])
    try:
        ca = [await Client.open(a.port, "room", f"a{i}") for i in range(3)]
        cb = [await Client.open(b.port, "room", f"b{i}") for i in range(3)]
        everyone = ca + cb
        await wait_numsub(redis, "switchyard:room", 2, "both processes subscribed")

        async def presence():
            await until(lambda: all(c.members() == 6 and len(c.here) == 2 for c in everyone),
                        lambda: f"6 members everywhere: {[c.here for c in everyone]}")
        await step("two processes: each client counts 6 members in 2 processes", presence())
        await step("two processes: publishers on both reach everyone once, in order",
                   exchange(everyone, [ca[0], cb[0]], ["pa", "pb"], "two processes"))

        async def last_leave():
            solo = await Client.open(a.port, "solo", "solo")
            await wait_numsub(redis, "switchyard:solo", 1, "the first subscriber")
            await solo.send("leave")
            await until(lambda: "left" in solo.msgs, "left")
            await wait_numsub(redis, "switchyard:solo", 0, "after the last left")
            assert "switchyard:solo" not in redis.cli("PUBSUB", "CHANNELS").split()
            again = await Client.open(b.port, "solo", "again")
            await wait_numsub(redis, "switchyard:solo", 1, "joined again")
            await again.close()
            await wait_numsub(redis, "switchyard:solo", 0, "closed: the last left")
            await solo.close()
        await step("a channel is subscribed while it has local subscribers", last_leave())

        async def outage():
            redis.stop()
            for c in everyone:
                c.msgs.clear()
            for i in range(1, 11):
                await ca[0].send(f"pub down-{i}")
            await until(lambda: all(count_from(c.msgs, ["down"]) == 10 for c in ca),
                        "local delivery while Redis is down")
            await until(lambda: "Redis" in a.stderr() and "[warn]" in a.stderr(),
                        lambda: f"a warning in the log: {a.stderr()[-500:]}")
            redis.start()
            await wait_numsub(redis, "switchyard:room", 2, "subscriptions restored")
            await exchange(everyone, [ca[1], cb[1]], ["qa", "qb"], "after the restart")
            for c in cb:
                assert count_from(c.msgs, ["down"]) == 0, "a message of the outage came late"
        await step("Redis killed and restarted: local delivery goes on, then all resumes",
                   outage())
        for c in everyone:
            await c.close()
    finally:
        for s in (a, b):
            code = s.stop()
            if code != 0 or "Sanitizer" in s.stderr():
                report(False, "SIGTERM: exit 0", f"exit {code}: {s.stderr()[-1500:]}")


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


async def workers_and_redis(redis):
    w = Server(APP, args=["--workers", "2", "--redis", redis.url, "--redis-prefix", "t2:"])
    s = Server(APP, args=["--redis", redis.url, "--redis-prefix", "t2:"])
    try:
        deadline = time.monotonic() + 30
        while len(children(w.proc.pid)) < 2 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        cw = []
        while len(cw) < 4 or len({c.pid for c in cw}) < 2:
            assert len(cw) < 60, "connections all went to one worker"
            cw.append(await Client.open(w.port, "room", f"w{len(cw)}"))
        cs = [await Client.open(s.port, "room", f"s{i}") for i in range(2)]
        everyone = cw + cs
        await wait_numsub(redis, "t2:room", 3, "two workers and one process subscribed")
        pids = sorted({c.pid for c in cw})
        pubs = [next(c for c in cw if c.pid == p) for p in pids] + [cs[0]]
        await step("--workers 2 --redis beside one process: all once each, in order",
                   exchange(everyone, pubs, ["w1", "w2", "s1"], "workers and Redis"))
        for c in everyone:
            await c.close()
    finally:
        for x in (w, s):
            code = x.stop()
            if code != 0 or "Sanitizer" in x.stderr() or "while stopping" in x.stderr():
                report(False, "SIGTERM: exit 0", f"exit {code}: {x.stderr()[-1500:]}")


def bad_url():
    r = subprocess.run([BIN, "--redis", "http://x", APP], capture_output=True, text=True,
                       timeout=30)
    report(r.returncode == 1 and "bad --redis" in r.stderr, "a bad --redis URL: exit 1",
           f"exit {r.returncode}: {r.stderr}")


def run():
    if missing_bin():
        return 1
    redis = RedisServer()

    def watchdog(*_):
        redis.stop()
        print("not ok - watchdog: the run took more than 270 s")
        print("0 passed, 1 failed")
        os._exit(1)
    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(270)
    try:
        bad_url()
        asyncio.run(two_processes(redis))
        asyncio.run(workers_and_redis(redis))
    except Exception:
        report(False, "run", traceback.format_exc())
    finally:
        redis.stop()
        signal.alarm(0)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
