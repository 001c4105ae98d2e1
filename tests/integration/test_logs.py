"""tests/integration/test_logs.py: log lines, --log-level, --log-format json, Lua print, the
access log (--access-log FILE|-), SIGUSR1 reopening it (alone and with --workers) and --version.

Every log line on stderr is parsed: in JSON mode with json.loads (time as RFC 3339, level,
worker, pid, msg), in text mode against its pattern. Access log lines are parsed (logfmt, or
JSON) and checked against what the test did: HTTP/1.1 and HTTP/2 requests, upgrade decisions
(accept, ignore, 426, reject, error), and the close lines of a WebSocket and a raw stream with
the exact message and byte counts the test sent and the close codes. Every wait is bounded;
the test stops every process it started, by PID.
Prints "ok - NAME" / "not ok - NAME" and "N passed, N failed"; exits non-zero on failure.
"""
import asyncio
import datetime
import json
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import BIN, case_registry, missing_bin, read_shared  # noqa: E402

import h2.config  # noqa: E402
import h2.connection  # noqa: E402
import h2.events  # noqa: E402
import websockets  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
APP = os.path.join(HERE, "logs_app.lua")
ROOT = os.path.dirname(os.path.dirname(HERE))
WAIT = 30.0  # bound of every wait that succeeds in well under a second when things work
STARTED = []  # every server process started here, to stop at the end
LEVELS = ("fatal", "error", "warn", "info", "debug")
TEXT_LINE = re.compile(r"^(\S+) \[(fatal|error|warn|info|debug)\] worker=(\d+|supervisor) "
                       r"pid=(\d+) (.*)$")
LOGFMT = re.compile(r'([a-z_]+)=("(?:[^"\\]|\\.)*"|[^ "]+)')

TESTS, test = case_registry()


def start(args, app=APP):
    """Starts the binary; returns the process once its listening lines are read (p.port)."""
    want = 1 + sum(1 for a in args if a == "--listen")
    log = tempfile.TemporaryFile()
    p = subprocess.Popen([BIN, "--listen", "127.0.0.1:0"] + args + [app], stdout=subprocess.PIPE,
                         stderr=log, stdin=subprocess.DEVNULL)
    p.log = log
    STARTED.append(p)
    buf = b""
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        lines = buf.decode().split("\n")[:-1]
        if sum(1 for ln in lines if ln.startswith("listening on ")) >= want:
            break
        r, _, _ = select.select([p.stdout], [], [], 0.1)
        if r:
            chunk = os.read(p.stdout.fileno(), 4096)
            if not chunk:
                break
            buf += chunk
    lines = buf.decode().split("\n")[:-1]
    urls = [ln for ln in lines if ln.startswith("listening on ")]
    if not urls:
        raise AssertionError(f"no listening line: {buf!r}; {stderr(p)}")
    p.port = int(urls[0].rsplit(":", 1)[1])
    p.out_start = buf
    return p


def stderr(p):
    return read_shared(p.log)


def stop(p, sig=signal.SIGTERM):
    """Stops p (by PID); returns its exit code and the rest of its stdout."""
    if p.poll() is None:
        p.send_signal(sig)
    try:
        out, _ = p.communicate(timeout=WAIT)
    except subprocess.TimeoutExpired:
        p.kill()
        out, _ = p.communicate()
    return p.returncode, p.out_start + out


def wait_for(cond, what):
    deadline = time.monotonic() + WAIT
    while True:
        v = cond()
        if v:
            return v
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def exchange(port, data):
    """Sends data on a new connection and reads until the server closes; returns the bytes
    and the client's local port."""
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    local = s.getsockname()[1]
    s.sendall(data)
    got = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
    s.close()
    return got, local


def get(port, path, method="GET", extra="", body=b""):
    head = f"{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra}"
    if body:
        head += f"Content-Length: {len(body)}\r\n"
    return exchange(port, head.encode() + b"\r\n" + body)


def offer(port, path, token="foo/1"):
    return get(port, path, extra=f"Connection: Upgrade\r\nUpgrade: {token}\r\n")


def h2_get(port, path):
    """One GET over HTTP/2 with prior knowledge; returns (status, body)."""
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    conn.send_headers(1, [(":method", "GET"), (":path", path), (":scheme", "http"),
                          (":authority", "127.0.0.1")], end_stream=True)
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    s.sendall(conn.data_to_send())
    status, body, done = None, b"", False
    while not done:
        data = s.recv(65536)
        assert data, "HTTP/2 connection closed early"
        for ev in conn.receive_data(data):
            if isinstance(ev, h2.events.ResponseReceived):
                status = int(dict(ev.headers)[b":status"])
            elif isinstance(ev, h2.events.DataReceived):
                body += ev.data
                conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded):
                done = True
        s.sendall(conn.data_to_send())
    conn.close_connection()
    s.sendall(conn.data_to_send())
    s.close()
    return status, body


async def ws_session(port):
    async with websockets.connect(f"ws://127.0.0.1:{port}/ws", compression=None,
                                  ping_interval=None, open_timeout=WAIT,
                                  close_timeout=WAIT) as ws:
        await ws.send("hello")
        await ws.send(b"\0" * 1000)
        await ws.send("x")
        got = [await ws.recv() for _ in range(3)]
        await ws.close(code=4001, reason="bye")
    return got


def raw_session(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    s.sendall(b"GET /raw HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n")
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(4096)
        assert chunk, head
        head += chunk
    assert head.startswith(b"HTTP/1.1 101"), head
    rest = head.split(b"\r\n\r\n", 1)[1]
    for piece in (b"abc", b"defgh"):
        s.sendall(piece)
        while len(rest) < len(piece):
            rest += s.recv(4096)
        assert rest == piece, rest
        rest = b""
    s.close()


def parse_time(text):
    t = datetime.datetime.fromisoformat(text)
    assert t.tzinfo is not None, text
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+(Z|[+-]\d\d:\d\d)$", text), text
    now = datetime.datetime.now(datetime.timezone.utc)
    assert abs((now - t).total_seconds()) < 600, (text, now)
    return t


def text_lines(p):
    """Parses every stderr line of p as a text log line: [(time, level, worker, pid, msg)]."""
    out = []
    for line in stderr(p).splitlines():
        m = TEXT_LINE.match(line)
        assert m, f"not a log line: {line!r}"
        parse_time(m.group(1))
        out.append((m.group(1), m.group(2), m.group(3), int(m.group(4)), m.group(5)))
    return out


def json_lines(p):
    out = []
    for line in stderr(p).splitlines():
        rec = json.loads(line)
        assert set(rec) == {"time", "level", "worker", "pid", "msg"}, rec
        parse_time(rec["time"])
        assert rec["level"] in LEVELS, rec
        assert isinstance(rec["msg"], str) and isinstance(rec["pid"], int), rec
        out.append(rec)
    return out


def parse_logfmt(line):
    rec, pos = {}, 0
    for m in LOGFMT.finditer(line):
        assert m.start() == pos, f"junk at {pos} in {line!r}"
        k, v = m.group(1), m.group(2)
        rec[k] = json.loads(v) if v.startswith('"') else int(v) if re.match(r"^-?\d+$", v) \
            else float(v) if re.match(r"^-?\d+\.\d+$", v) else v
        pos = m.end() + 1
    assert pos == len(line) + 1, f"junk at the end of {line!r}"
    return rec


def access_records(text, fmt, workers=(0,)):
    recs = []
    for line in text.splitlines():
        rec = json.loads(line) if fmt == "json" else parse_logfmt(line)
        parse_time(rec["time"])
        assert rec["event"] in ("request", "upgrade", "close"), rec
        assert rec["remote"] == "127.0.0.1" and isinstance(rec["port"], int), rec
        assert rec["worker"] in workers and isinstance(rec["conn"], int), rec
        assert isinstance(rec["duration"], (int, float)) and 0 <= rec["duration"] < 60, rec
        recs.append(rec)
    return recs


def read(path):
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return ""


@test("--version prints the version and the linked libraries, exit 0")
def t_version():
    with open(os.path.join(ROOT, "src", "switchyard.h")) as f:
        h = f.read()
    ver = ".".join(re.search(rf"#define SY_VERSION_{k} (\d+)", h).group(1)
                   for k in ("MAJOR", "MINOR", "PATCH"))
    r = subprocess.run([BIN, "--version"], capture_output=True, timeout=WAIT)
    assert r.returncode == 0, r
    lines = r.stdout.decode().splitlines()
    assert lines[0] == f"switchyard {ver}", lines
    for lib in ("Lua 5.4", "OpenSSL 3", "libev 4", "nghttp2 1", "zlib 1"):
        assert any(ln.startswith(lib) for ln in lines[1:]), (lib, lines)


@test("--log-format json: every stderr line is one object with time, level, worker, pid, msg")
def t_json():
    p = start(["--log-format", "json", "--log-level", "debug"])
    try:
        assert get(p.port, "/log")[0].startswith(b"HTTP/1.1 200")
        wait_for(lambda: "odd-marker" in stderr(p), "the log lines")
    finally:
        rc, _ = stop(p)
    assert rc == 0, rc
    recs = json_lines(p)
    assert all(r["worker"] == 0 and r["pid"] == p.pid for r in recs), recs
    by_msg = {r["msg"]: r["level"] for r in recs}
    for lv in ("debug", "info", "warn", "error"):
        assert by_msg.get(f"{lv}-marker") == lv, recs
    odd = [r["msg"] for r in recs if r["msg"].startswith("odd-marker")]
    want = 'odd-marker "q" back\\slash\n\ttab\x01\x7f bad:\ufffd\ufffd end \u00e9'
    assert odd == [want], (odd, want)


@test("text lines: time, [level], worker, pid, message on one line; debug hidden at info")
def t_text():
    p = start([])
    try:
        get(p.port, "/log")
        wait_for(lambda: "odd-marker" in stderr(p), "the log lines")
    finally:
        rc, _ = stop(p)
    assert rc == 0, rc
    lines = text_lines(p)
    assert all(w == "0" and pid == p.pid for _, _, w, pid, _ in lines), lines
    msgs = {m: lv for _, lv, _, _, m in lines}
    assert "debug-marker" not in msgs, lines
    for lv in ("info", "warn", "error"):
        assert msgs.get(f"{lv}-marker") == lv, lines
    odd = [m for m in msgs if m.startswith("odd-marker")]
    assert odd == ['odd-marker "q" back\\slash\\n\ttab\\x01\\x7f bad:\ufffd\ufffd end \u00e9'], odd


@test("--log-level warn hides info lines; an unknown level is refused")
def t_level():
    p = start(["--log-level", "warn"])
    try:
        get(p.port, "/log")
        wait_for(lambda: "error-marker" in stderr(p), "the error line")
    finally:
        rc, _ = stop(p)
    assert rc == 0, rc
    lines = text_lines(p)
    assert {lv for _, lv, _, _, _ in lines} <= {"warn", "error"}, lines
    assert [m for _, _, _, _, m in lines if m.endswith("-marker")] == ["warn-marker",
                                                                       "error-marker"], lines
    r = subprocess.run([BIN, "--log-level", "loud", APP], capture_output=True, timeout=WAIT)
    assert r.returncode == 2 and b"--log-level" in r.stderr, r


@test("Lua print goes to stderr as one info line, stdout keeps only the listening line")
def t_print():
    p = start([])
    try:
        assert get(p.port, "/print")[0].endswith(b"printed\n")
        wait_for(lambda: "print-marker" in stderr(p), "the printed line")
    finally:
        rc, out = stop(p)
    assert rc == 0, rc
    assert re.fullmatch(rb"listening on http://127\.0\.0\.1:\d+\n", out), out
    printed = [(lv, m) for _, lv, _, _, m in text_lines(p) if "print-marker" in m]
    assert printed == [("info", "print-marker\t42\tnil\ttrue")], printed


def run_access(fmt):
    d = tempfile.mkdtemp()
    path = os.path.join(d, "access.log")
    p = start(["--access-log", path] + (["--log-format", "json"] if fmt == "json" else []))
    try:
        resp, local = get(p.port, "/a?x=1")
        assert resp.endswith(b"hello\n"), resp
        assert get(p.port, "/a", "HEAD")[0].startswith(b"HTTP/1.1 200")
        assert get(p.port, "/p", "POST", body=b"hello")[0].endswith(b"hello\n")
        assert h2_get(p.port, "/h2") == (200, b"hello\n")
        assert offer(p.port, "/ignore")[0].endswith(b"hello\n")
        assert offer(p.port, "/426")[0].startswith(b"HTTP/1.1 426")
        assert offer(p.port, "/reject")[0].startswith(b"HTTP/1.1 403")
        assert offer(p.port, "/error")[0].startswith(b"HTTP/1.1 500")
        assert exchange(p.port, b"NOT HTTP\r\n\r\n")[0].startswith(b"HTTP/1.1 400")
        assert asyncio.run(ws_session(p.port)) == ["hello", b"\0" * 1000, "x"]
        raw_session(p.port)
        wait_for(lambda: read(path).count("\n") >= 13, "13 access lines")
    finally:
        rc, out = stop(p)
    assert rc == 0, rc
    text = read(path)
    shutil.rmtree(d)
    recs = access_records(text, fmt)

    def one(**kv):
        found = [r for r in recs if all(r.get(k) == v for k, v in kv.items())]
        assert len(found) == 1, (kv, found, text)
        return found[0]

    r = one(target="/a?x=1")
    assert r["event"] == "request" and r["method"] == "GET" and r["proto"] == "HTTP/1.1", r
    assert r["status"] == 200 and r["bytes_out"] == 6 and r["port"] == local, r
    assert "decision" not in r and "upgrade" not in r, r
    r = one(target="/a", method="HEAD")
    assert r["status"] == 200 and r["bytes_out"] == 0, r
    r = one(target="/p", method="POST")
    assert r["status"] == 200 and r["bytes_out"] == 6, r
    r = one(target="/h2")
    assert (r["event"], r["proto"], r["stream"], r["method"], r["status"], r["bytes_out"]) == \
        ("request", "HTTP/2", 1, "GET", 200, 6), r
    for target, decision, status, size in (("/ignore", "ignore", 200, 6),
                                           ("/426", "426", 426, None),
                                           ("/reject", "reject", 403, 3),
                                           ("/error", "error", 500, None)):
        r = one(target=target)
        assert (r["event"], r["upgrade"], str(r["decision"]), r["status"]) == \
            ("upgrade", "foo/1", decision, status), r
        assert size is None or r["bytes_out"] == size, r
    r = one(status=400)
    assert r["event"] == "request" and "method" not in r and "target" not in r, r
    up = one(target="/ws")
    assert (up["event"], up["decision"], up["status"], up["protocol"], up["upgrade"]) == \
        ("upgrade", "accept", 101, "websocket", "websocket"), up
    r = one(event="close", proto="websocket")
    assert r["conn"] == up["conn"], (r, up)
    assert (r["msgs_in"], r["msgs_out"], r["bytes_in"], r["bytes_out"]) == (3, 3, 1006, 1006), r
    assert (r["close_recv"], r["close_sent"]) == (4001, 4001), r
    up = one(target="/raw")
    assert (up["decision"], up["status"], up["protocol"]) == ("accept", 101, "echo"), up
    r = one(event="close", proto="raw")
    assert r["conn"] == up["conn"] and (r["bytes_in"], r["bytes_out"]) == (8, 8), (r, up)
    assert "msgs_in" not in r and "close_sent" not in r, r
    assert len(recs) == 13, text
    return p


@test("--access-log FILE (text): requests, HTTP/2, upgrade decisions, WebSocket and raw closes")
def t_access_text():
    p = run_access("text")
    text_lines(p)


@test("--access-log FILE with --log-format json: the same records as JSON objects")
def t_access_json():
    p = run_access("json")
    json_lines(p)


@test("--access-log -: access lines on stdout after the listening line")
def t_access_stdout():
    p = start(["--access-log", "-"])
    try:
        get(p.port, "/s1")
        get(p.port, "/s2")
    finally:
        rc, out = stop(p)
    assert rc == 0, rc
    lines = out.decode().splitlines()
    assert lines[0].startswith("listening on "), lines
    recs = access_records("\n".join(lines[1:]), "text")
    assert [r["target"] for r in recs] == ["/s1", "/s2"], lines


def targets(path):
    return [r["target"] for r in access_records(read(path), "text", (0, 1))]


@test("SIGUSR1 after a rename: later lines go to a new file, none lost")
def t_reopen():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "access.log")
    p = start(["--access-log", path])
    try:
        for i in range(10):
            get(p.port, f"/n{i}")
        wait_for(lambda: read(path).count("\n") == 10, "10 lines")
        os.rename(path, path + ".1")
        for i in range(10, 15):
            get(p.port, f"/n{i}")
        wait_for(lambda: read(path + ".1").count("\n") == 15, "15 lines in the renamed file")
        os.kill(p.pid, signal.SIGUSR1)
        wait_for(lambda: os.path.exists(path), "the new file")
        for i in range(15, 20):
            get(p.port, f"/n{i}")
        wait_for(lambda: read(path).count("\n") == 5, "5 lines in the new file")
        assert p.poll() is None
    finally:
        rc, _ = stop(p)
    assert rc == 0, rc
    assert targets(path + ".1") == [f"/n{i}" for i in range(15)], read(path + ".1")
    assert targets(path) == [f"/n{i}" for i in range(15, 20)], read(path)
    assert any("reopened the access log" in m for _, lv, _, _, m in text_lines(p)), stderr(p)
    shutil.rmtree(d)


@test("--workers 2: SIGUSR1 to the supervisor reopens the access log in every worker")
def t_reopen_workers():
    d = tempfile.mkdtemp()
    path = os.path.join(d, "access.log")
    p = start(["--workers", "2", "--access-log", path])

    def workers_in(p_):
        return {parse_logfmt(x)["worker"] for x in read(p_).splitlines()}

    def hit_both(p_, tag):
        n = 0
        while workers_in(p_) != {0, 1}:
            assert n < 400, f"both workers never answered: {read(p_)}"
            get(p.port, f"/{tag}{n}")
            n += 1
            time.sleep(0.01)
        return n

    try:
        hit_both(path, "a")
        os.rename(path, path + ".1")
        before = read(path + ".1")
        os.kill(p.pid, signal.SIGUSR1)
        wait_for(lambda: sum("reopened the access log" in ln for ln in stderr(p).splitlines())
                 == 2, "both workers reopening")
        hit_both(path, "b")
        assert p.poll() is None
    finally:
        rc, _ = stop(p)
    assert rc == 0, rc
    assert read(path + ".1") == before, "a line reached the renamed file after the reopen"
    assert all(t.startswith("/b") for t in targets(path)), read(path)
    lines = text_lines(p)
    reopened = sorted(w for _, _, w, _, m in lines if "reopened the access log" in m)
    assert reopened == ["0", "1"], lines
    assert any(w == "supervisor" and "SIGUSR1" in m for _, _, w, _, m in lines), lines
    shutil.rmtree(d)


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
