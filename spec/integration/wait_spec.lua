-- spec/integration/wait_spec.lua: hooks, handlers and timer callbacks that wait (sy.sleep)
-- while the loop serves everyone else; a client that leaves mid-wait closes the waiting hook.
-- Gates (spec/apps/wait.lua) order the events, so nothing here depends on timing.
local H = require "helpers.server"
local W = require "helpers.ws"

local function counter(port, name)
  return tonumber(H.kv(H.must_roundtrip(port, H.get("/counters")).body)[name]) or 0
end

local function open_gate(port, g)
  assert.are.equal(200, H.must_roundtrip(port, H.get("/open?g=" .. g)).status)
end

local function upgrade_request(path)
  return H.request("GET", path, { "Upgrade: websocket", "Connection: Upgrade",
                                   "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Version: 13" })
end

describe("hooks that wait", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/wait.lua")

  it("serves another client's GET while app.upgrade waits, then applies its decision", function()
    local a = H.must_connect(srv.port)
    assert(a:send(upgrade_request("/slow-upgrade?g=up1")))
    -- The upgrade waits for its gate: this GET is answered meanwhile, and so is the one
    -- that opens the gate. Were the loop blocked, neither would be.
    assert.are.equal("now\n", H.must_roundtrip(srv.port, H.get("/now")).body)
    assert.are.equal(0, counter(srv.port, "upgrade_after"))
    open_gate(srv.port, "up1")
    local res = a:must_response()
    assert.are.equal(101, res.status)
    -- options.data of the decision is ws.data
    W.text(a, "data")
    assert.are.equal("slow", W.must_text(a))
    assert.are.equal(1, counter(srv.port, "upgrade_after"))
  end)

  it("applies reject and ignore decisions made after a wait", function()
    local res = H.must_roundtrip(srv.port, H.request("GET", "/slow-reject",
      { "Upgrade: foo", "Connection: Upgrade" }))
    assert.are.equal(403, res.status)
    assert.are.equal("rejected after a wait\n", res.body)
    res = H.must_roundtrip(srv.port, H.request("GET", "/slow-ignore",
      { "Upgrade: foo", "Connection: Upgrade" }))
    assert.are.equal(200, res.status)
    assert.are.equal("ignored, then served\n", res.body)
  end)

  it("answers 500 when a hook fails after its wait, and logs it", function()
    local res = H.must_roundtrip(srv.port, H.request("GET", "/slow-fail",
      { "Upgrade: foo", "Connection: Upgrade" }))
    assert.are.equal(500, res.status)
    assert.are.equal(500, H.must_roundtrip(srv.port, H.get("/fail")).status)
    local log = srv:log()
    assert.truthy(log:find("app.upgrade: spec/apps/wait.lua:%d+: upgrade hook failed"), log)
    assert.truthy(log:find("app.request: spec/apps/wait.lua:%d+: request hook failed"), log)
    assert.truthy(log:find("stack traceback", 1, true), log)
  end)

  it("lets app.request wait before res:send, keep-alive going on after", function()
    local c = H.must_connect(srv.port)
    assert(c:send(H.get("/sleep?s=0.01") .. H.get("/now")))
    assert.are.equal("slept\n", c:must_response().body)
    assert.are.equal("now\n", c:must_response().body)
  end)

  it("closes a waiting app.request whose client left; its kept res answers closed", function()
    local before = counter(srv.port, "request_closed")
    local c = H.must_connect(srv.port)
    assert(c:send(H.get("/gate?g=req1")))
    assert(H.wait_for(function() return H.must_roundtrip(srv.port, H.get("/now")) end))
    c:close()
    -- The to-be-closed variable of the hook ran when its client left.
    assert(H.wait_for(function() return counter(srv.port, "request_closed") == before + 1 end))
    open_gate(srv.port, "req1")
    assert.are.equal("nil closed\n", H.must_roundtrip(srv.port, H.get("/kept")).body)
    H.sleep(0.05)
    assert.are.equal(0, counter(srv.port, "request_after"))
  end)

  it("closes a waiting app.upgrade whose client left", function()
    local before = counter(srv.port, "upgrade_closed")
    local after = counter(srv.port, "upgrade_after")
    local c = H.must_connect(srv.port)
    assert(c:send(upgrade_request("/slow-upgrade?g=up2")))
    H.must_roundtrip(srv.port, H.get("/now"))
    c:close()
    assert(H.wait_for(function() return counter(srv.port, "upgrade_closed") == before + 1 end))
    open_gate(srv.port, "up2")
    H.sleep(0.05)
    assert.are.equal(after, counter(srv.port, "upgrade_after"))
  end)

  it("runs a hook on after it answered, whatever its client does", function()
    local c = H.must_connect(srv.port)
    assert(c:send(H.get("/answer-then-wait?s=0.05")))
    assert.are.equal("answered\n", c:must_response().body)
    c:close()
    assert(H.wait_for(function() return counter(srv.port, "after_answer_done") == 1 end))
    assert.are.equal(1, counter(srv.port, "after_answer_closed"))
  end)

  it("lets timer callbacks wait", function()
    assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/timer")).status)
    assert(H.wait_for(function() return counter(srv.port, "timer_after") >= 1 end))
  end)

  it("holds a WebSocket's messages in order while its handler waits", function()
    local c = W.open(srv.port, "/ws")
    local burst = { W.frame(W.TEXT, "sleep 0.05") }
    for i = 1, 20 do burst[#burst + 1] = W.frame(W.TEXT, tostring(i)) end
    assert(c:send(table.concat(burst)))
    assert.are.equal("woke 0.05", W.must_text(c))
    for i = 1, 20 do assert.are.equal(tostring(i), W.must_text(c)) end
  end)

  it("answers pings while a WebSocket handler waits", function()
    local c = W.open(srv.port, "/ws")
    W.text(c, "gate ws1")
    W.ping(c, "are you there")
    W.text(c, "after")
    assert.are.same({ "pong", "are you there" }, { W.read(c) })
    open_gate(srv.port, "ws1")
    assert.are.equal("opened ws1", W.must_text(c))
    assert.are.equal("after", W.must_text(c))
  end)

  it("closes a waiting WebSocket handler whose client left", function()
    local before = counter(srv.port, "ws_closed")
    local after = counter(srv.port, "ws_after")
    local c = W.open(srv.port, "/ws")
    W.text(c, "gate ws2")
    W.text(c, "held, never run")
    H.must_roundtrip(srv.port, H.get("/now"))
    c:close()
    assert(H.wait_for(function() return counter(srv.port, "ws_closed") == before + 1 end))
    open_gate(srv.port, "ws2")
    H.sleep(0.05)
    assert.are.equal(after, counter(srv.port, "ws_after"))
  end)

  it("closes with 1011 when a WebSocket handler fails after its wait", function()
    local c = W.open(srv.port, "/ws")
    W.text(c, "fail")
    W.text(c, "dropped")
    local kind, code = W.read(c)
    assert.are.same({ "close", 1011 }, { kind, code })
    assert.truthy(srv:log():find("websocket handler 'message':", 1, true), srv:log())
  end)

  it("makes options.data the WebSocket's ws.data and the raw conn.data", function()
    local c = W.open(srv.port, "/ws?who=ann")
    assert.are.equal("ann", W.call(c, "data"))
    local r = H.must_connect(srv.port)
    assert(r:send(H.request("GET", "/raw?who=bob", { "Upgrade: raw-wait", "Connection: Upgrade" })))
    assert.are.equal(101, r:must_response().status)
    assert(r:send("data\n"))
    assert.are.equal("bob", r:line())
  end)

  it("holds a raw connection's data in order while its handler waits", function()
    local r = H.must_connect(srv.port)
    assert(r:send(H.request("GET", "/raw", { "Upgrade: raw-wait", "Connection: Upgrade" })))
    assert.are.equal(101, r:must_response().status)
    assert(r:send("sleep 0.05\n"))
    H.sleep(0.01)
    assert(r:send("one\n"))
    assert.are.equal("woke", r:line())
    assert.are.equal("one", r:line())
  end)
end)

describe("waiting calls", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/wait.lua")

  it("count only Lua's running time against max_time", function()
    assert.are.equal("fine\n", H.must_roundtrip(srv.port, H.get("/sleep-past-max-time"),
                                                { timeout = 30 }).body)
    -- Twice: the coroutine a budget error ended is not reused with its hooks off.
    for _ = 1, 2 do
      local res = H.must_roundtrip(srv.port, H.get("/loop-after-sleep"), { timeout = 30 })
      assert.are.equal(500, res.status)
    end
    assert.truthy(srv:log():find("time budget", 1, true), srv:log())
  end)

  it("raise a clear error where they cannot wait", function()
    local body = H.must_roundtrip(srv.port, H.get("/own-coroutine")).body
    assert.truthy(body:find("sy.sleep cannot wait inside a coroutine of the app's own", 1, true),
                  body)
    body = H.must_roundtrip(srv.port, H.get("/sort")).body
    assert.truthy(body:find("sy.sleep cannot wait here", 1, true), body)
    assert.are.equal("sum 6\n", H.must_roundtrip(srv.port, H.get("/own-coroutine-yields")).body)
    body = H.must_roundtrip(srv.port, H.get("/resume-hook")).body
    assert.truthy(body:find("cannot resume the coroutine of a hook", 1, true), body)
    assert.truthy(body:find("cannot close the coroutine of a hook", 1, true), body)
    assert.are.equal(500, H.must_roundtrip(srv.port, H.get("/yield")).status)
    assert.truthy(srv:log():find("a hook cannot yield", 1, true), srv:log())
  end)

  it("cannot wait while the app loads", function()
    local path = os.tmpname()
    H.write_file(path, 'local sy = require "switchyard"\nsy.sleep(0.01)\nreturn {}\n')
    local code, out, err = H.run({ H.bin(), "--check", path })
    os.remove(path)
    assert.are.equal(1, code)
    local text = (out or "") .. (err or "")
    assert.truthy(text:find("sy.sleep can only wait inside a hook", 1, true), text)
  end)
end)
