"""When accept() fails for lack of file descriptors the server keeps running without spinning
on the listener, and serves again once connections close."""
import os, resource, socket, subprocess, sys, time

BIN = os.environ.get("SWITCHYARD_BIN", "build/switchyard")
passed = failed = 0


def check(ok, what):
    global passed, failed
    if ok:
        passed += 1
    else:
        failed += 1
        print("FAIL:", what, file=sys.stderr)


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(port, timeout=3):
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    data = b""
    while True:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return data


def limit_fds():
    resource.setrlimit(resource.RLIMIT_NOFILE, (32, 32))


proc = subprocess.Popen([BIN, "--listen", "127.0.0.1:0", "examples/hello.lua"],
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=limit_fds)
held = []
try:
    line = proc.stdout.readline().decode()
    check(line.startswith("listening on http://"), "listening line: " + line)
    port = int(line.strip().rsplit(":", 1)[1])
    check(get(port).startswith(b"HTTP/1.1 200"), "serves before exhaustion")

    # Hold more idle keep-alive connections than the server has descriptors.
    for _ in range(60):
        s = socket.create_connection(("127.0.0.1", port), timeout=3)
        held.append(s)
    time.sleep(0.5)
    before = cpu_seconds(proc.pid)
    time.sleep(1.5)
    used = cpu_seconds(proc.pid) - before
    check(proc.poll() is None, "server still running while out of descriptors")
    check(used < 0.5, f"no busy loop while out of descriptors (used {used:.2f} s CPU in 1.5 s)")

    for s in held:
        s.close()
    held = []
    ok = False
    deadline = time.time() + 5
    while time.time() < deadline and not ok:
        try:
            ok = get(port, timeout=1).startswith(b"HTTP/1.1 200")
        except OSError:
            time.sleep(0.2)
    check(ok, "serves again once connections close")
finally:
    for s in held:
        s.close()
    proc.terminate()
    try:
        rc = proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        rc = proc.wait()
    check(rc == 0, f"exit status 0 after SIGTERM (got {rc})")
    err = proc.stderr.read().decode()
    check("pausing accepts" in err, "the exhaustion is logged")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed else 0)
