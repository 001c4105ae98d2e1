#!/usr/bin/env python3
"""tests/integration/test_topics_backpressure.py: a worker that does not read its topic link.

With --workers 2, a client of worker A makes A stop turning its loop (tests/integration/
topics_app.lua "stall"), and a client of worker B publishes (ws:publish) 400 messages of 256 KiB
(100 MiB) to the room. The supervisor queues at most 64 MiB for A: it logs "is not reading; dropped",
and its memory stays bounded (VmRSS). Once A runs again, its client gets the messages that
were queued, in order and without duplicates, then what is published next: a gap, never a
reordering.
"""
import asyncio
import os
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, missing_bin, start_watchdog  # noqa: E402
from topics_clients import Client, until  # noqa: E402

APP = os.path.join(os.getcwd(), "tests", "integration", "topics_app.lua")
COUNT, SIZE = 400, 256 * 1024
passed = failed = 0


def report(ok, name, err=""):
    global passed, failed
    passed += ok
    failed += not ok
    print("ok -" if ok else "not ok -", name, err)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1


def ids(msgs, tag):
    return [int(m.split(":", 1)[0].rpartition("-")[2]) for m in msgs
            if isinstance(m, str) and m.startswith(tag + "-")]


async def main(srv, tmp):
    deadline = time.monotonic() + 30
    while len(children(srv.proc.pid)) < 2 and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    clients = []
    while len({c.pid for c in clients}) < 2:
        assert len(clients) < 60, "connections all went to one worker"
        clients.append(await Client.open(srv.port, "room", f"c{len(clients)}"))
    a = clients[0]
    b = next(c for c in clients if c.pid != a.pid)
    others = [c for c in clients if c.pid == a.pid]
    go = os.path.join(tmp, "go")
    await a.send("stall " + go)
    await until(lambda: os.path.exists(go + ".on"), "worker A stalled")
    pad = "x" * SIZE
    for i in range(1, COUNT + 1):
        await b.send(f"wspub big-{i}:{pad}")
    await until(lambda: "is not reading; dropped" in srv.stderr(),
                lambda: f"the supervisor's warning: {srv.stderr()[-800:]} (the last client has "
                f"{len(ids(clients[-1].msgs, 'big'))}, supervisor VmRSS {rss_mib(srv.proc.pid):.0f} MiB)",
                120)
    rss = rss_mib(srv.proc.pid)
    report(rss < 200, "the supervisor's memory stays bounded", f"VmRSS {rss:.0f} MiB")
    open(go, "w").close()
    await b.send("pub after-1:")
    await until(lambda: all(any(isinstance(m, str) and m.startswith("after-1") for m in c.msgs)
                            for c in others), "worker A delivers again", 120)
    for c in others:
        got = ids(c.msgs, "big")
        ok = 0 < len(got) < COUNT and got == sorted(set(got)) and got[0] == 1
        report(ok, f"client {c.name} of the stalled worker: a prefix in order, then a gap",
               f"{len(got)} messages, first {got[:3]}, last {got[-3:]}")
        last = c.msgs[-1]
        report(isinstance(last, str) and last.startswith("after-1"),
               f"client {c.name}: the next publish arrives after the gap", repr(last)[:40])
    report(a.pid in {str(p) for p in children(srv.proc.pid)}, "worker A was not replaced")
    for c in clients:
        await c.close()


def run():
    if missing_bin():
        return 1
    srv = Server(APP, args=["--workers", "2"])
    start_watchdog(srv, 270)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                asyncio.run(main(srv, tmp))
            except Exception:
                report(False, "run", traceback.format_exc())
            finally:
                open(os.path.join(tmp, "go"), "w").close()
                code = srv.stop()  # before the directory (and the file) goes
    except Exception:
        report(False, "run", traceback.format_exc())
        code = srv.stop()
    report(code == 0 and "Sanitizer" not in srv.stderr(), "SIGTERM: exit 0, clean stderr",
           f"exit {code}: {srv.stderr()[-1500:]}" if code != 0 else "")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(run())
