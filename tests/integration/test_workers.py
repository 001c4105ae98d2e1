"""--workers N: N processes serve the same port, each with its own Lua state; SIGTERM stops
them all (exit 0); a worker that dies is replaced (test_supervisor.py has the details)."""
import os, signal, socket, subprocess, sys, time

BIN = os.environ.get("SWITCHYARD_BIN", "build/switchyard")
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


def children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def get(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=3)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def start():
    p = subprocess.Popen([BIN, "--workers", "3", "--listen", "127.0.0.1:0", "examples/hello.lua"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    line = p.stdout.readline().decode()
    check(line.startswith("listening on http://"), "one listening line: " + line)
    port = int(line.strip().rsplit(":", 1)[1])
    deadline = time.time() + 5
    while len(children(p.pid)) < 3 and time.time() < deadline:
        time.sleep(0.05)
    return p, port


def stop(p, sig=signal.SIGTERM):
    try:
        p.send_signal(sig)
        return p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        p.kill()
        return p.wait()


p, port = start()
try:
    kids = children(p.pid)
    check(len(kids) == 3, f"three workers (got {kids})")
    replies = [get(port) for _ in range(30)]
    check(all(r.startswith(b"HTTP/1.1 200") and r.endswith(b"hello\n") for r in replies),
          "every request answered")
    rc = stop(p)
    check(rc == 0, f"SIGTERM: exit 0 (got {rc})")
    check(all(not os.path.exists(f"/proc/{k}") or
              open(f"/proc/{k}/stat").read().split()[2] == "Z" for k in kids),
          "workers gone after the parent")
finally:
    if p.poll() is None:
        p.kill()

p, port = start()
try:
    kids = children(p.pid)
    if kids:
        os.kill(kids[0], signal.SIGKILL)
    deadline = time.time() + 30
    now = children(p.pid)
    while (len(now) < 3 or kids[0] in now) and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
        now = children(p.pid)
    check(p.poll() is None and len(now) == 3 and kids[0] not in now,
          f"a dead worker is replaced (had {kids}, now {now}, exit {p.poll()})")
    check(all(get(port).endswith(b"hello\n") for _ in range(10)), "answers after the restart")
    rc = stop(p)
    check(rc == 0, f"SIGTERM after a restart: exit 0 (got {rc})")
    check(b"restarting" in p.stderr.read(), "the restart is logged")
finally:
    if p.poll() is None:
        p.kill()
        p.wait()

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
