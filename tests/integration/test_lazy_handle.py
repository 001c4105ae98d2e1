#!/usr/bin/env python3
"""tests/integration/test_lazy_handle.py: a WebSocket handle made on first use sees what an
eager one sees.

The Lua handle (`ws`) of a WebSocket whose handler set has no `open` is made when something
first needs it (here: the first message, after the connection sat idle). The app below answers
each message with the handle's fields (ws.path, ws.subprotocol, ws.data, ws.id, ws.remote_addr,
an app field); the set "eager" has an `open` handler, so its handles are made at the open as
always, and both must answer the same:
- accepted with a named set or with the table, with and without a subprotocol and options.data
  (the same data table for every connection, as ws.data);
- ws.id is the connection's, the same at every message, distinct between connections; an app
  field set on a late handle stays;
- connections accepted before a SIGHUP reload and idle until after it: the named set runs the
  new app's code, the table keeps the old, ws.data is still the table given at the accept;
- a ping (answered by the core) and a client's close on an idle connection run no handler and
  need no handle; the close handler of a set that has one still runs;
- out of memory (app.lua.max_memory, the heap filled by another connection's handler) when the
  handle is to be made: that connection closes with 1011, the server goes on.

Run from the repo root with SWITCHYARD_BIN set. Every wait is a generous cap (30 s); servers
started here are stopped by PID.
"""
import asyncio
import os
import signal
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sytest import Server, case_registry, run_cases  # noqa: E402
from test_reload import AppDir, WAIT, http_get, wait_for, wait_version  # noqa: E402

import websockets  # noqa: E402

APP = r"""
local sy = require "switchyard"
local VERSION = "@V@"
local state = package.loaded.lazy_state or { closes = 0 }
package.loaded.lazy_state = state
local shared = state.shared or { tag = "shared" }
state.shared = shared -- the same table across reloads, as options.data

local function fields(ws)
  return table.concat({ VERSION, ws.path, tostring(ws.subprotocol), tostring(ws.data.tag),
    tostring(ws.data == shared), math.type(ws.id), tostring(ws.id > 0), ws.remote_addr,
    tostring(ws.user) }, "|")
end

local function message(ws, data)
  if data == "id" then return ws:send(tostring(ws.id)) end
  if data == "set" then ws.user = "u" end
  ws:send(fields(ws))
end

local app = { handlers = {} }
app.handlers.lazy = { message = message }
app.handlers.eager = { message = message, open = function(ws) ws.opened = true end }
app.handlers.closing = { message = message, close = function(ws) state.closes = state.closes + 1 end }

local function offered(req, name)
  local list = req.headers["sec-websocket-protocol"]
  for p in (list or ""):gmatch("[^,%s]+") do
    if p == name then return true end
  end
  return false
end

function app.upgrade(req)
  local set = req.path:match("^/(%a+)")
  local opts = { subprotocol = offered(req, "echo") and "echo" or nil }
  if req.path:find("data", 1, true) then opts.data = shared end
  if req.path:find("table", 1, true) then return sy.accept("websocket", app.handlers[set], opts) end
  return sy.accept("websocket", set, opts)
end

function app.request(req, res)
  if req.path == "/closes" then return res:send(200, tostring(state.closes) .. "\n") end
  res:send(200, VERSION .. "\n")
end
return app
"""

TESTS, test = case_registry()


async def connect(port, path, sub=None):
    return await websockets.connect(f"ws://127.0.0.1:{port}{path}", open_timeout=WAIT,
                                    close_timeout=WAIT, max_queue=None,
                                    subprotocols=[sub] if sub else None)


async def ask(ws, data):
    await ws.send(data)
    return await asyncio.wait_for(ws.recv(), WAIT)


def expect(version, path, sub, data):
    tag, same = ("shared", "true") if data else ("nil", "false")
    return "|".join([version, path, str(sub or "nil"), tag, same, "integer", "true",
                     "127.0.0.1", "nil"])


PATHS = ["/{}/a", "/{}/data", "/{}/table", "/{}/table-data"]


def with_server(fn):
    d = AppDir()
    d.write("v1", app=APP)
    srv = Server(d.path)
    try:
        asyncio.run(fn(srv, d))
        assert srv.stop() == 0, srv.stderr()
    finally:
        srv.stop()
        d.remove()


@test("a late handle has the fields an eager one has")
def fields():
    async def run(srv, d):
        conns = []
        for sub in (None, "echo"):
            for p in PATHS:
                for s in ("lazy", "eager"):
                    path = p.format(s)
                    conns.append((path, sub, "data" in path, await connect(srv.port, path, sub)))
        await asyncio.sleep(0.3)  # idle first
        ids = set()
        for path, sub, data, ws in conns:
            got = await ask(ws, "x")
            assert got == expect("v1", path, sub, data), (path, sub, got)
            first = await ask(ws, "id")
            assert await ask(ws, "id") == first
            ids.add(first)
            got = await ask(ws, "set")
            assert got.endswith("|u"), got
            assert (await ask(ws, "x")).endswith("|u")
        assert len(ids) == len(conns), ids
        for *_, ws in conns:
            await ws.close()
    with_server(run)


@test("idle across a reload: named sets run the new code, tables the old, data kept")
def reload():
    async def run(srv, d):
        conns = []
        for p in PATHS:
            for s in ("lazy", "eager"):
                path = p.format(s)
                conns.append((path, "data" in path, await connect(srv.port, path, "echo")))
        d.write("v2", app=APP)
        srv.proc.send_signal(signal.SIGHUP)
        wait_version(srv, "v2")
        for path, data, ws in conns:
            version = "v1" if "table" in path else "v2"
            got = await ask(ws, "x")
            assert got == expect(version, path, "echo", data), (path, got)
        for *_, ws in conns:
            await ws.close()
    with_server(run)


@test("pings and closes of idle connections; close handlers still run")
def ping_close():
    async def run(srv, d):
        idle = [await connect(srv.port, "/lazy/a") for _ in range(3)]
        closing = [await connect(srv.port, "/closing/a") for _ in range(2)]
        for ws in idle + closing:
            pong = await ws.ping(b"p")
            await asyncio.wait_for(pong, WAIT)
        for ws in idle + closing:
            await ws.close()
        wait_for(lambda: http_get(srv.port, "/closes")[0] == "2", "2 close handlers", srv)
        ws = await connect(srv.port, "/closing/a")
        assert (await ask(ws, "x")).startswith("v1|/closing/a|")
        await ws.close()
        wait_for(lambda: http_get(srv.port, "/closes")[0] == "3", "3 close handlers", srv)
    with_server(run)


OOM_APP = r"""
local sy = require "switchyard"
-- Everything fill() uses is made at load: once it returns, it leaves no garbage that a
-- collection could free for the handle.
local state = { n = 0 }
local LONG, SHORT = { 65536, 4096, 256, 64 }, { 32, 16, 1 }
local function long(size) return string.rep("x", size) end -- long strings: not shared
local function short(size, i) return string.format("%0" .. size .. "d", i) end
local function add(make, size)
  local keep = state.keep
  while state.n < #keep do
    local ok, s = pcall(make, size, state.n)
    if not ok then break end
    state.n = state.n + 1
    keep[state.n] = s
  end
  collectgarbage() -- what a failed attempt left
end
local function fill()
  collectgarbage()
  local keep = {}
  for i = 1, 100000 do keep[i] = false end -- slots made before: filling allocates strings only
  state.keep = keep
  for _, size in ipairs(LONG) do add(long, size) end
  for _, size in ipairs(SHORT) do add(short, size) end
end
local function free() state.keep = nil; collectgarbage() end
local app = { lua = { max_memory = 8 * 1024 * 1024 } }
local handlers = {
  message = function(ws, data)
    if data == "fill" then
      sy.after(1, free)
      fill()
      return
    end
    ws:send(data)
  end,
}
function app.upgrade(req) return sy.accept("websocket", handlers) end
function app.request(req, res) res:send(200, "ok\n") end
return app
"""


@test("out of memory making a late handle closes that connection with 1011")
def out_of_memory():
    async def run(srv, d):
        idle = await connect(srv.port, "/idle")
        filler = await connect(srv.port, "/filler")
        assert await ask(filler, "hello") == "hello"  # its handle exists now
        await filler.send("fill")
        await asyncio.sleep(0.3)
        await idle.send("x")
        try:
            got = await asyncio.wait_for(idle.recv(), WAIT)
            raise AssertionError(f"answered {got!r}; log: {srv.stderr()}")
        except websockets.ConnectionClosed as e:
            assert e.rcvd is not None and e.rcvd.code == 1011, e
        # Once the filler lets go (its timer), the server serves new connections.
        deadline = asyncio.get_running_loop().time() + WAIT
        while True:
            try:
                fresh = await connect(srv.port, "/fresh")
                if await ask(fresh, "y") == "y":
                    break
            except (websockets.ConnectionClosed, websockets.InvalidHandshake, OSError,
                    asyncio.TimeoutError):
                pass
            assert asyncio.get_running_loop().time() < deadline, srv.stderr()
            await asyncio.sleep(0.2)
        await fresh.close()
        await filler.close()
        assert "cannot make the handle" in srv.stderr(), srv.stderr()

    d = AppDir()
    d.write("v1", app=OOM_APP)
    srv = Server(d.path)
    try:
        asyncio.run(run(srv, d))
        assert srv.stop() == 0, srv.stderr()
    finally:
        srv.stop()
        d.remove()


if __name__ == "__main__":
    sys.exit(run_cases(TESTS))
