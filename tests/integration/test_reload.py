#!/usr/bin/env python3
"""tests/integration/test_reload.py: SIGHUP reloads the app while connections stay open.

The app (written here to a temporary directory, with a module it requires) answers with its
version: GET / gives "VERSION MODVERSION PID", a WebSocket accepted with the named handler set
"chat" (or with the table itself, on /table) echoes "VERSION:MODVERSION:DATA", a raw "line"
connection accepted with the named set "line" echoes "VERSION:DATA".

- under load: one client echoes through several reloads; every reply is counted and in order
  (one at a time, and a pipelined burst with the reload in the middle of it);
- a broken new app (syntax error, error while loading, typo of an app key) keeps the old one
  (and its module), the log names the file and the cause, and a good file loads afterwards;
- a live WebSocket accepted with a named set runs the new code; one accepted with a table keeps
  the old; a raw connection with a named set runs the new code too;
- a response pending (its hook waiting) across a reload is answered, by the old code;
- --workers 2: the supervisor forwards SIGHUP to both workers, each runs the new code, and no
  worker was replaced.

Run from the repo root with SWITCHYARD_BIN set. Every wait is a generous cap (30 s) that is
never reached when things work; the servers started here are stopped by PID.
"""
import asyncio
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
import time

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, case_registry, run_cases  # noqa: E402

import websockets  # noqa: E402

WAIT = 30.0

APP = r"""
local sy = require "switchyard"
local mod = require "reload_mod"
local VERSION = "@V@"

local function pid()
  local f = io.open("/proc/self/stat")
  local line = f and f:read("l") or ""
  if f then f:close() end
  return line:match("^(%d+)") or "?"
end

local app = { handlers = {} }
app.handlers.chat = {
  message = function(ws, data) ws:send(VERSION .. ":" .. mod.version .. ":" .. data) end,
}
app.handlers.line = {
  data = function(conn, bytes) conn:write(VERSION .. ":" .. bytes) end,
}
-- State that outlives reloads: a package.loaded entry that is no file of the app's directory.
local state = package.loaded.reload_state or {}
package.loaded.reload_state = state

function app.request(req, res)
  if req.path == "/later" then -- pending until /release (bounded)
    state.waiting = true
    local t0 = sy.now()
    while not state.released and sy.now() - t0 < 30 do sy.sleep(0.02) end
    res:send(200, VERSION .. " later\n")
    return
  elseif req.path == "/waiting" then
    res:send(200, tostring(state.waiting == true) .. "\n")
    return
  elseif req.path == "/release" then
    state.released = true
    res:send(200, "released\n")
    return
  end
  res:send(200, VERSION .. " " .. mod.version .. " " .. pid() .. "\n")
end
function app.upgrade(req)
  if req:offers("line") then return sy.accept("line", "line") end
  if req.path == "/table" then return sy.accept("websocket", app.handlers.chat) end
  return sy.accept("websocket", "chat")
end
return app
"""

MOD = 'return { version = "@V@" }\n'


class AppDir:
    """The app file and its module in a temporary directory, rewritten for each version."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="sy_reload_")
        self.path = os.path.join(self.dir, "app.lua")

    def write(self, version, app=APP, mod=MOD):
        for name, text in (("reload_mod.lua", mod), ("app.lua", app)):
            tmp = os.path.join(self.dir, name + ".tmp")
            with open(tmp, "w") as f:
                f.write(text.replace("@V@", version))
            os.replace(tmp, os.path.join(self.dir, name))

    def remove(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def http_get(port, path="/"):
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), data
    return body.decode().split()


def wait_for(cond, what, srv=None):
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        v = cond()
        if v:
            return v
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}; log: {srv.stderr() if srv else ''}")


def wait_version(srv, version):
    return wait_for(lambda: http_get(srv.port)[0] == version, f"version {version}", srv)


def ws_url(port, path="/"):
    return f"ws://127.0.0.1:{port}{path}"


async def connect(port, path="/"):
    return await websockets.connect(ws_url(port, path), open_timeout=WAIT, close_timeout=WAIT,
                                    max_queue=None)


async def echo(ws, data):
    await ws.send(data)
    return await asyncio.wait_for(ws.recv(), WAIT)


def raw_connect(port):
    s = socket.create_connection(("127.0.0.1", port), timeout=WAIT)
    s.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nUpgrade: line\r\nConnection: Upgrade\r\n\r\n")
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(4096)
        assert chunk, data
        data += chunk
    assert data.startswith(b"HTTP/1.1 101"), data
    return s


def raw_echo(s, data):
    s.sendall(data)
    got = b""
    while not got.endswith(data):
        chunk = s.recv(4096)
        assert chunk, got
        got += chunk
    return got.decode()


TESTS, test = case_registry()


@test("under load: every reply through 5 reloads, in order, none lost")
def under_load():
    d = AppDir()
    d.write("v0")
    srv = Server(d.path)
    try:
        async def run():
            ws = await connect(srv.port)
            n, seen = 0, ["v0"]
            for k in range(1, 6):
                d.write(f"v{k}")
                srv.proc.send_signal(signal.SIGHUP)
                # Echo one at a time: 40 replies, and on until the new version answers.
                deadline = time.monotonic() + WAIT
                for phase in range(1_000_000):
                    got = await echo(ws, f"m{n}")
                    ver, mver, data = got.split(":")
                    assert data == f"m{n}", (got, n)
                    assert ver == mver, got
                    assert int(ver[1:]) >= int(seen[-1][1:]), (got, seen)
                    if ver != seen[-1]:
                        seen.append(ver)
                    n += 1
                    if ver == f"v{k}" and phase >= 40:
                        break
                    assert time.monotonic() < deadline, f"v{k} never answered"
            # A pipelined burst with a reload in the middle of it.
            d.write("v6")
            burst = 300
            for i in range(burst):
                await ws.send(f"b{i}")
                if i == burst // 2:
                    srv.proc.send_signal(signal.SIGHUP)
            vers = []
            for i in range(burst):
                got = await asyncio.wait_for(ws.recv(), WAIT)
                ver, _, data = got.split(":")
                assert data == f"b{i}", (got, i)
                vers.append(int(ver[1:]))
            assert vers == sorted(vers), "versions went back"
            await ws.close()
            return n, seen, vers
        n, seen, vers = asyncio.run(run())
        assert seen == [f"v{k}" for k in range(6)], seen
        wait_version(srv, "v6")
        assert srv.alive()
        print(f"# {n} replies one at a time, {len(vers)} pipelined "
              f"({vers.count(5)} by v5, {vers.count(6)} by v6)")
        code = srv.stop()
        assert code == 0, f"exit {code}: {srv.stderr()}"
        assert len(re.findall(r"reloaded the app from ", srv.stderr())) == 6, srv.stderr()
    finally:
        srv.stop()
        d.remove()


BROKEN = [
    ("syntax error", "local x = = 1\nreturn {}\n", "unexpected symbol"),
    ("error while loading",
     'local mod = require "reload_mod"\nerror("boom at load " .. mod.version)\n',
     "boom at load vBAD"),
    ("typo of an app key",
     'return { upgarde = function() end, request = function(req, res) res:send(200, "x") end }\n',
     "upgarde"),
]


@test("a broken new app keeps the old one, its module and its connections; the log says why")
def broken():
    d = AppDir()
    d.write("v1")
    srv = Server(d.path)
    try:
        async def run():
            ws = await connect(srv.port)
            assert await echo(ws, "a") == "v1:v1:a"
            for i, (name, text, cause) in enumerate(BROKEN):
                d.write("vBAD", app=text)
                srv.proc.send_signal(signal.SIGHUP)
                wait_for(lambda: srv.stderr().count("cannot reload the app") > i,
                         f"the failed reload is logged ({name})", srv)
                line = [ln for ln in srv.stderr().splitlines()
                        if "cannot reload the app" in ln][i]
                assert d.path in line and cause in line, (name, line)
                assert "error" in line, line
                assert http_get(srv.port)[:2] == ["v1", "v1"], name
                assert await echo(ws, name) == f"v1:v1:{name}", name
            # A good file after them loads (and so does its module).
            d.write("v2")
            srv.proc.send_signal(signal.SIGHUP)
            wait_version(srv, "v2")
            assert http_get(srv.port)[:2] == ["v2", "v2"]
            assert await echo(ws, "b") == "v2:v2:b"
            await ws.close()
        asyncio.run(run())
        assert srv.stop() == 0, srv.stderr()
    finally:
        srv.stop()
        d.remove()


@test("named handler sets run the new code on live connections; a table keeps the old")
def named_sets():
    d = AppDir()
    d.write("v1")
    srv = Server(d.path)
    try:
        async def run():
            named = await connect(srv.port, "/")
            table = await connect(srv.port, "/table")
            raw = raw_connect(srv.port)
            assert await echo(named, "x") == "v1:v1:x"
            assert await echo(table, "x") == "v1:v1:x"
            assert raw_echo(raw, b"r\n") == "v1:r\n"
            d.write("v2")
            srv.proc.send_signal(signal.SIGHUP)
            wait_version(srv, "v2")
            assert await echo(named, "y") == "v2:v2:y"
            # The table keeps its closure (old VERSION) but the module upvalue too.
            assert await echo(table, "y") == "v1:v1:y"
            assert raw_echo(raw, b"s\n") == "v2:s\n"
            fresh = await connect(srv.port, "/table")
            assert await echo(fresh, "z") == "v2:v2:z"
            for ws in (named, table, fresh):
                await ws.close()
            raw.close()
        asyncio.run(run())
        assert srv.stop() == 0, srv.stderr()
    finally:
        srv.stop()
        d.remove()


@test("a response pending across a reload is answered by the code that began it")
def pending_response():
    import threading
    d = AppDir()
    d.write("v1")
    srv = Server(d.path)
    try:
        got = []
        th = threading.Thread(target=lambda: got.append(http_get(srv.port, "/later")))
        th.start()
        wait_for(lambda: http_get(srv.port, "/waiting") == ["true"], "/later waiting", srv)
        d.write("v2")
        srv.proc.send_signal(signal.SIGHUP)
        wait_version(srv, "v2")
        assert http_get(srv.port, "/release") == ["released"]
        th.join(WAIT)
        assert got == [["v1", "later"]], got
        assert srv.stop() == 0, srv.stderr()
    finally:
        srv.stop()
        d.remove()


@test("--workers 2: SIGHUP reaches both workers, each runs the new code, none replaced")
def workers():
    d = AppDir()
    d.write("v1")
    srv = Server(d.path, args=["--workers", "2"])
    try:
        def pids_of(version):
            seen = set()
            deadline = time.monotonic() + WAIT
            while len(seen) < 2 and time.monotonic() < deadline:
                ver, _, pid = http_get(srv.port)
                if ver == version:
                    seen.add(pid)
            assert len(seen) == 2, f"{version}: workers seen {seen}; {srv.stderr()}"
            return seen

        async def run():
            ws = await connect(srv.port)
            assert await echo(ws, "x") == "v1:v1:x"
            before = pids_of("v1")
            d.write("v2")
            srv.proc.send_signal(signal.SIGHUP)
            after = pids_of("v2")
            assert before == after, (before, after)
            assert await echo(ws, "y") == "v2:v2:y"
            await ws.close()
            return after
        pids = asyncio.run(run())
        log = srv.stderr()
        assert len(re.findall(r"reloaded the app from ", log)) == 2, log
        print(f"# workers {sorted(pids)} both reloaded")
        assert srv.stop() == 0, srv.stderr()
    finally:
        srv.stop()
        d.remove()


SLOW = r"""
-- Loading takes 2.5 s of wall time once the file "slow" is next to the app.
local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$")
local f = io.open(dir .. "/slow")
if f then
  f:close()
  local t0 = os.time()
  while os.time() - t0 < 3 do end
end
""" + APP


@test("--workers 2: a reload that loads slowly gets the start-up allowance of the hard limit")
def workers_slow_reload():
    d = AppDir()
    d.write("v1", app=SLOW)
    os.environ["SWITCHYARD_WORKER_HARD_LIMIT"] = "2"
    try:
        srv = Server(d.path, args=["--workers", "2"])
    finally:
        del os.environ["SWITCHYARD_WORKER_HARD_LIMIT"]
    try:
        wait_version(srv, "v1")
        open(os.path.join(d.dir, "slow"), "w").close()
        d.write("v2", app=SLOW)
        srv.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: srv.stderr().count("reloaded the app from ") == 2, "both reloads", srv)
        log = srv.stderr()
        assert "hard limit" not in log and "restarting" not in log, log
        assert srv.stop() == 0, srv.stderr()
    finally:
        srv.stop()
        d.remove()


if __name__ == "__main__":
    sys.exit(run_cases(TESTS))
