"""tests/integration/test_supervisor.py: signals and the --workers supervisor.

SIGHUP reloads the app and stops nothing (a WebSocket open across it still echoes; SIGTERM
then closes it with 1001 and exit 0), alone and with --workers (tests/integration/
test_reload.py checks the reload itself); workers serve listeners on any address ([::1], 127.0.0.2); a signal that
arrives right after start-up stops every worker (none is left orphaned); a worker killed with
SIGKILL is replaced and the service goes on answering; one that cannot start is retried after
a doubling wait while the others serve; a worker stuck inside one C call (a backtracking Lua
pattern) past the hard limit (SWITCHYARD_WORKER_HARD_LIMIT=3 here) is killed and replaced. Every wait is bounded; the test stops every process it started, by PID.
Prints "ok - NAME" / "not ok - NAME" and "N passed, N failed"; exits non-zero on failure.
"""
import asyncio
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import BIN, case_registry, missing_bin, read_shared  # noqa: E402

APP = os.path.join(os.path.dirname(os.path.abspath(__file__)), "supervisor_app.lua")
WAIT = 30.0  # bound of every wait that succeeds in well under a second when things work
STARTED = []  # every server process (Popen) started here, to stop at the end


def ppid_of(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] == "Z" else int(fields[1])


def children(pid):
    """Live (not zombie) children of pid."""
    kids = []
    for name in os.listdir("/proc"):
        if name.isdigit() and ppid_of(int(name)) == pid:
            kids.append(int(name))
    return sorted(kids)


def alive(pid):
    return ppid_of(pid) is not None


def start(args, env=None, app=APP):
    """Starts the binary; returns (proc, [(scheme, host, port)]) once every listener printed."""
    want = sum(1 for a in args if a in ("--listen", "--tls-listen"))
    log = tempfile.TemporaryFile()
    e = dict(os.environ)
    e.update(env or {})
    p = subprocess.Popen([BIN] + args + [app], stdout=subprocess.PIPE, stderr=log,
                         stdin=subprocess.DEVNULL, env=e)
    p.log = log
    STARTED.append(p)
    urls, buf = [], b""
    deadline = time.monotonic() + WAIT
    while len(urls) < want and time.monotonic() < deadline:
        r, _, _ = select.select([p.stdout], [], [], 0.1)
        if r:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
            urls = [ln[len("listening on "):] for ln in buf.decode().split("\n")[:-1]
                    if ln.startswith("listening on ")]
    if len(urls) < want:
        raise AssertionError(f"no listening lines: {buf!r}; {stderr(p)}")
    out = []
    for u in urls:
        scheme, rest = u.split("://")
        host, port = rest.rsplit(":", 1)
        out.append((scheme, host.strip("[]"), int(port)))
    return p, out


def stderr(p):
    return read_shared(p.log)


def wait_workers(p, n, exclude=()):
    """Waits until p has n live workers, none of them in exclude; returns them."""
    deadline = time.monotonic() + WAIT
    kids = []
    while time.monotonic() < deadline:
        kids = children(p.pid)
        if len(kids) == n and not set(kids) & set(exclude):
            return kids
        if p.poll() is not None:
            break
        time.sleep(0.05)
    raise AssertionError(f"want {n} workers (not {list(exclude)}), have {kids}; "
                         f"exit {p.poll()}; {stderr(p)}")


def get(host, port, path="/", timeout=WAIT):
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(fam, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect((host, port))
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            try:
                chunk = s.recv(4096)
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    return data


def stop(p, sig=signal.SIGTERM):
    """Signals p and waits; returns the exit code. Workers left behind are killed (by PID)."""
    kids = children(p.pid)
    if p.poll() is None:
        p.send_signal(sig)
    try:
        rc = p.wait(WAIT)
    except subprocess.TimeoutExpired:
        p.kill()
        rc = p.wait(WAIT)
    for k in kids:
        if alive(k):
            os.kill(k, signal.SIGKILL)
    return rc


TESTS, test = case_registry()


async def ws_through_sighup(p, host, port):
    """A WebSocket echo round trip, SIGHUP to p (a reload), another round trip on the same
    connection, then SIGTERM: the close code the client receives."""
    import websockets
    async with websockets.connect(f"ws://{host}:{port}/", open_timeout=WAIT,
                                  close_timeout=WAIT) as ws:
        await ws.send("hi")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "hi"
        p.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + WAIT
        while stderr(p).count("reloaded the app") < max(1, len(children(p.pid))):
            assert time.monotonic() < deadline, f"no reload logged: {stderr(p)}"
            await asyncio.sleep(0.02)
        await ws.send("again")
        assert await asyncio.wait_for(ws.recv(), WAIT) == "again"
        assert p.poll() is None, "stopped on SIGHUP"
        p.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(ws.recv(), WAIT)
        except websockets.exceptions.ConnectionClosed:
            pass
        return ws.close_code


@test("SIGHUP: a reload, the WebSocket stays open; SIGTERM: close 1001 and exit 0")
def sighup_single():
    p, urls = start(["--listen", "127.0.0.1:0"])
    code = asyncio.run(ws_through_sighup(p, "127.0.0.1", urls[0][2]))
    rc = p.wait(WAIT)
    assert code == 1001, f"close code {code}, exit {rc}"
    assert rc == 0, f"exit {rc}"


@test("SIGHUP with --workers 2: both reload, none replaced; SIGTERM: 1001, exit 0, none left")
def sighup_workers():
    p, urls = start(["--workers", "2", "--listen", "127.0.0.1:0"])
    kids = wait_workers(p, 2)
    try:
        code = asyncio.run(ws_through_sighup(p, "127.0.0.1", urls[0][2]))
        rc = p.wait(WAIT)
        assert code == 1001, f"close code {code}, exit {rc}"
        assert rc == 0, f"exit {rc}"
        assert stderr(p).count("reloaded the app") == 2, stderr(p)
        assert "restarting" not in stderr(p), stderr(p)
        deadline = time.monotonic() + WAIT
        while any(alive(k) for k in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(alive(k) for k in kids), "workers left running"
    finally:
        for k in kids:
            if alive(k):
                os.kill(k, signal.SIGKILL)


@test("workers serve [::1] and 127.0.0.2")
def workers_any_address():
    args = ["--workers", "2", "--listen", "127.0.0.2:0"]
    v6 = True
    try:
        socket.socket(socket.AF_INET6).bind(("::1", 0))
    except OSError:
        v6 = False  # no IPv6 loopback here: the IPv4 part still runs
    if v6:
        args += ["--listen", "[::1]:0"]
    p, urls = start(args)
    try:
        wait_workers(p, 2)
        assert urls[0][1] == "127.0.0.2", urls
        if v6:
            assert urls[1][1] == "::1", urls
        for scheme, host, port in urls:
            for _ in range(6):
                r = get(host, port)
                assert r.startswith(b"HTTP/1.1 200") and b"pid " in r, (host, r)
        err = stderr(p)
        assert "error" not in err, err
    finally:
        assert stop(p) == 0


@test("a signal right after start-up leaves no worker behind")
def no_orphans():
    tmp = tempfile.mkdtemp(prefix="sy_orphans_")
    app = os.path.join(tmp, "app.lua")
    shutil.copy(APP, app)
    try:
        for i in range(5):
            p, _ = start(["--workers", "4", "--listen", "127.0.0.1:0"], app=app)
            p.send_signal(signal.SIGTERM)
            rc = p.wait(WAIT)
            left = []
            deadline = time.monotonic() + WAIT
            while time.monotonic() < deadline:
                left = []
                for name in os.listdir("/proc"):
                    try:
                        with open(f"/proc/{name}/cmdline", "rb") as f:
                            if app.encode() in f.read() and ppid_of(int(name)) is not None:
                                left.append(int(name))
                    except (OSError, ValueError):
                        pass
                if not left:
                    break
                time.sleep(0.1)
            for k in left:
                os.kill(k, signal.SIGKILL)
            assert not left, f"run {i}: exit {rc}, orphaned workers {left}"
            assert rc == 0, f"run {i}: exit {rc}"
    finally:
        shutil.rmtree(tmp)


@test("a worker killed with SIGKILL is replaced; the service goes on")
def restart_killed():
    p, urls = start(["--workers", "2", "--listen", "127.0.0.1:0"])
    port = urls[0][2]
    try:
        first = wait_workers(p, 2)
        os.kill(first[0], signal.SIGKILL)
        second = wait_workers(p, 2, exclude=[first[0]])
        os.kill(first[1], signal.SIGKILL)
        third = wait_workers(p, 2, exclude=first)
        assert p.poll() is None, "the supervisor exited"
        pids = set()
        for _ in range(20):
            r = get("127.0.0.1", port)
            assert r.startswith(b"HTTP/1.1 200"), r
            pids.add(int(r.rsplit(b"pid ", 1)[1]))
        assert pids <= set(third), (pids, third)
        err = stderr(p)
        assert err.count("restarting") >= 2, err
        assert str(first[0]) in err and str(first[1]) in err, err
        del second
    finally:
        rc = stop(p)
    assert rc == 0, f"exit {rc}"


@test("a worker that cannot start is retried with a doubling wait; the others serve on")
def restart_backoff():
    tmp = tempfile.mkdtemp(prefix="sy_backoff_")
    flag = os.path.join(tmp, "refuse")
    app = os.path.join(tmp, "app.lua")
    with open(APP) as f:
        text = f.read()
    # The copy refuses to load while the flag file exists, and marks each load that got past
    # that check with a file ready.PID.
    with open(app, "w") as f:
        f.write(f"if io.open({flag!r}) then error('the flag file exists') end\n"
                "do local f = io.open('/proc/self/stat') local pid = f:read('l'):match('^(%d+)') "
                f"f:close() io.open({tmp!r} .. '/ready.' .. pid, 'w'):close() end\n" + text)
    p, urls = start(["--workers", "2", "--listen", "127.0.0.1:0"], app=app)
    port = urls[0][2]
    try:
        first = wait_workers(p, 2)
        deadline = time.monotonic() + WAIT
        while not all(os.path.exists(os.path.join(tmp, f"ready.{k}")) for k in first):
            assert time.monotonic() < deadline, f"workers {first} never loaded the app"
            time.sleep(0.05)
        open(flag, "w").close()
        os.kill(first[0], signal.SIGKILL)
        waits = []
        deadline = time.monotonic() + WAIT
        while len(waits) < 5 and time.monotonic() < deadline:
            waits = [float(line.rsplit("restarting in ", 1)[1].split()[0])
                     for line in stderr(p).splitlines() if "restarting in " in line]
            r = get("127.0.0.1", port)
            assert r.startswith(b"HTTP/1.1 200"), r
            time.sleep(0.1)
        assert waits[:5] == [0.1, 0.2, 0.4, 0.8, 1.6], (waits, stderr(p))
        assert "the flag file exists" in stderr(p), stderr(p)
        os.unlink(flag)
        wait_workers(p, 2, exclude=[first[0]])
    finally:
        rc = stop(p)
        shutil.rmtree(tmp)
    assert rc == 0, f"exit {rc}"


@test("a worker stuck in one C call past the hard limit is killed and replaced")
def restart_stuck():
    p, urls = start(["--workers", "2", "--listen", "127.0.0.1:0"],
                    env={"SWITCHYARD_WORKER_HARD_LIMIT": "3"})
    port = urls[0][2]
    try:
        first = wait_workers(p, 2)
        stuck = {}

        def ask():
            try:
                stuck["reply"] = get("127.0.0.1", port, "/stuck", timeout=2 * WAIT)
            except OSError as e:
                stuck["reply"] = repr(e)

        t = threading.Thread(target=ask)
        t.start()
        t.join(2 * WAIT)
        assert not t.is_alive(), "the stuck request was never released"
        assert not str(stuck["reply"]).startswith("HTTP/1.1 200"), stuck
        now = wait_workers(p, 2)
        assert len(set(now) - set(first)) == 1, (first, now)
        for _ in range(10):
            r = get("127.0.0.1", port)
            assert r.startswith(b"HTTP/1.1 200"), r
        err = stderr(p)
        assert "hard limit" in err and "restarting" in err, err
    finally:
        rc = stop(p)
    assert rc == 0, f"exit {rc}"


def main():
    if missing_bin():
        return 1
    signal.signal(signal.SIGALRM, lambda *_: (print("not ok - watchdog"), os._exit(1)))
    signal.alarm(600)
    passed = failed = 0
    for name, fn in TESTS:
        try:
            fn()
            print(f"ok - {name}")
            passed += 1
        except Exception:  # noqa: BLE001
            print(f"not ok - {name}")
            traceback.print_exc()
            failed += 1
    for p in STARTED:
        if p.poll() is None:
            stop(p, signal.SIGKILL)
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
