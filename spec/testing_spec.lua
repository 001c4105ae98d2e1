-- spec/testing_spec.lua: switchyard.testing, the test kit for handlers (no server, no sockets).
local t = require "switchyard.testing"

describe("switchyard.testing", function()
  before_each(function() t.reset() end)

  it("answers a request and restores package.loaded.switchyard", function()
    local before = package.loaded["switchyard"]
    local seen
    local app = t.load({
      request = function(req, res)
        seen = require("switchyard")
        res:send(201, req.method .. " " .. req.path .. " " .. (req.query or "-") .. " "
                 .. (req.body or ""), { ["X-Thing"] = 7 })
      end,
    })
    local r = t.request(app, { method = "POST", path = "/a?b=1", body = "hi" })
    assert.equal(201, r.status)
    assert.equal("POST /a b=1 hi", r.body)
    assert.equal("7", r.headers["x-thing"])
    assert.equal(app.sy, seen)
    assert.equal(before, package.loaded["switchyard"])
  end)

  it("gives 404 without app.request", function()
    assert.equal(404, t.request(t.load({}), { path = "/" }).status)
  end)

  it("awaits a response sent from a timer", function()
    local app = t.load({
      request = function(_, res)
        local sy = require "switchyard"
        sy.after(5, function() res:send(200, "late") end)
      end,
    })
    local start = t.clock:now()
    local r = t.request(app, { path = "/" })
    assert.equal("late", r.body)
    assert.equal(start + 5, t.clock:now())
  end)

  it("awaits a response after sy.sleep, within the bound", function()
    local app = t.load({
      request = function(_, res)
        require("switchyard").sleep(10)
        res:send(200, "slept")
      end,
    })
    assert.equal("slept", t.request(app, {}).body)
    local r, err = t.request(app, { wait = 3 })
    assert.is_nil(r)
    assert.equal("no response", err)
  end)

  it("runs timers on the fake clock, every and cancel", function()
    local app = t.load({})
    local sy = app.sy
    local ticks, once = 0, 0
    local tm = sy.every(1, function() ticks = ticks + 1 end)
    sy.after(2.5, function() once = once + 1 end)
    t.clock:advance(0.5)
    assert.equal(0, ticks)
    t.clock:advance(2)
    assert.equal(2, ticks)
    assert.equal(1, once)
    assert.is_true(tm:cancel())
    assert.is_false(tm:active())
    t.clock:advance(10)
    assert.equal(2, ticks)
  end)

  it("wakes a sleeping handler when the clock passes its deadline", function()
    local app = t.load({
      upgrade = function() return require("switchyard").accept("websocket", {
        message = function(ws, m)
          require("switchyard").sleep(2)
          ws:send("after " .. m)
        end,
      }) end,
    })
    local c = t.websocket(app, { path = "/" })
    c:send("a")
    c:send("b") -- held behind the sleeping handler
    assert.is_nil(c:receive())
    t.clock:advance(1.9)
    assert.is_nil(c:receive())
    t.clock:advance(0.1)
    assert.equal("after a", c:receive())
    assert.is_nil(c:receive())
    t.clock:advance(2)
    assert.equal("after b", c:receive())
  end)

  it("raises on sy.sleep outside a hook and in the app's own coroutine", function()
    local app = t.load({ request = function(_, res)
      local co = coroutine.wrap(function() require("switchyard").sleep(1) end)
      co()
    end })
    assert.has_error(function() app.sy.sleep(1) end,
                     "sy.sleep: cannot wait here (only inside a hook, handler or timer)")
    assert.equal(500, t.request(app, {}).status)
    assert.matches("cannot wait inside a coroutine of the app's own", app.errors[1].message)
  end)

  it("makes accepting what the client did not offer an app error", function()
    local app = t.load({ upgrade = function(req)
      local sy = require "switchyard"
      if req.path == "/sub" then return sy.accept("websocket", {}, { subprotocol = "chat" }) end
      return sy.accept("h2c")
    end })
    local d = t.upgrade(app, { path = "/" })
    assert.same({ "error", 500 }, { d.kind, d.status })
    assert.matches('token "h2c" was not offered', app.errors[1].message)
    assert.equal(500, t.request(app, { path = "/", upgrades = { "websocket" } }).status)
    assert.has_error(function() t.websocket(app, { path = "/sub" }) end,
                     "t.websocket: app.upgrade did not accept websocket (error 500)")
    assert.matches('subprotocol "chat" was not offered', app.errors[3].message)
  end)

  it("returns decisions as plain tables", function()
    local app = t.load({
      upgrade = function(req)
        local sy = require "switchyard"
        if req.path == "/ws" and req:offers("websocket") then
          return sy.accept("websocket", { open = function() end }, { data = { x = 1 } })
        elseif req.path == "/no" then
          return sy.reject(403, "no\n", { ["x-why"] = "because" })
        elseif req.path == "/tls" then
          return sy.upgrade_required("TLS/1.3")
        end
        return nil
      end,
    })
    local d = t.upgrade(app, { path = "/ws" })
    assert.equal("accept", d.kind)
    assert.equal("websocket", d.token)
    assert.equal(1, d.options.data.x)
    assert.is_function(d.handlers.open)
    d = t.upgrade(app, { path = "/no" })
    assert.same({ "reject", 403, "no\n" }, { d.kind, d.status, d.body })
    assert.equal("because", d.headers["x-why"])
    assert.equal("upgrade_required", t.upgrade(app, { path = "/tls" }).kind)
    assert.equal("TLS/1.3", t.upgrade(app, { path = "/tls" }).protocols)
    assert.equal("ignore", t.upgrade(app, { path = "/other" }).kind)
  end)

  it("matches offers by name and version", function()
    local got = {}
    local app = t.load({ upgrade = function(req)
      got.tls13 = req:offers("TLS/1.3") ~= nil
      got.tls = req:offers("tls") ~= nil
      got.tls12 = req:offers("TLS/1.2") ~= nil
    end })
    t.upgrade(app, { upgrades = { "TLS/1.3" } })
    assert.same({ tls13 = true, tls = true, tls12 = false }, got)
  end)

  it("records a hook error and answers 500", function()
    local app = t.load({ request = function() error("boom") end })
    local r = t.request(app, {})
    assert.equal(500, r.status)
    assert.equal(1, #app.errors)
    assert.equal("app.request", app.errors[1].where)
    assert.matches("boom", app.errors[1].message)
    assert.matches("stack traceback", app.errors[1].message)
    assert.equal(1, #app:logged("error"))
  end)

  it("captures sy.log", function()
    local app = t.load({ request = function(_, res)
      require("switchyard").log("info", "hello", 42)
      res:send(200)
    end })
    t.request(app, {})
    assert.same({ "hello 42" }, app:logged("info"))
    assert.has_error(function() app.sy.log("loud", "x") end)
  end)

  it("publishes among fake clients; ws:publish skips the sender", function()
    local app = t.load({ upgrade = function()
      local sy = require "switchyard"
      return sy.accept("websocket", {
        open = function(ws) ws:subscribe("room") end,
        message = function(ws, m)
          if m == "all" then sy.publish("room", "to all")
          else ws:publish("room", "from " .. ws.id) end
        end,
      })
    end })
    local a, b = t.websocket(app, {}), t.websocket(app, {})
    assert.equal(2, app.sy.subscribers("room"))
    a:send("others")
    assert.is_nil(a:receive())
    assert.equal("from " .. a.ws.id, b:receive())
    b:send("all")
    assert.equal("to all", a:receive())
    assert.equal("to all", b:receive())
    b:close(1000)
    assert.equal(1, app.sy.subscribers("room"))
  end)

  it("passes close codes both ways and runs close once", function()
    local closes = {}
    local app = t.load({ upgrade = function()
      return require("switchyard").accept("websocket", {
        message = function(ws, m) if m == "bye" then ws:close(4000, "done") end end,
        close = function(ws, code, reason) closes[#closes + 1] = { code, reason } end,
      })
    end })
    local a = t.websocket(app, {})
    a:send("bye")
    assert.equal(4000, a.close_code)
    assert.equal("done", a.close_reason)
    assert.same({ nil, "closed" }, { a:send("more") })
    local b = t.websocket(app, {})
    b:close(1001, "away")
    assert.equal(1001, b.close_code)
    assert.same({ { 4000, "done" }, { 1001, "away" } }, closes)
  end)

  it("closes with 1011 when a handler raises", function()
    local app = t.load({ upgrade = function()
      return require("switchyard").accept("websocket", {
        message = function() error("bad message") end,
      })
    end })
    local c = t.websocket(app, {})
    c:send("x")
    assert.equal(1011, c.close_code)
    assert.equal("ws message", app.errors[1].where)
  end)

  it("gives ws.data from accept options, binary flags and read-only names", function()
    local app = t.load({ upgrade = function()
      return require("switchyard").accept("websocket", {
        open = function(ws) ws:send(ws.data.greeting) end,
        message = function(ws, m, binary) ws:send(m, binary) end,
      }, { data = { greeting = "hi" }, subprotocol = "chat" })
    end })
    local c = t.websocket(app, { headers = { ["sec-websocket-protocol"] = "chat" } })
    assert.same({ "hi", false }, { c:receive() })
    c:send("\0\1", true)
    assert.same({ "\0\1", true }, { c:receive() })
    assert.equal("chat", c.ws.subprotocol)
    assert.has_error(function() c.ws.path = "/x" end, "ws.path is read-only")
    c.ws.user = "me"
    assert.equal("me", c.ws.user)
    -- As the server's handle: a table whose own field is send, which the app may assign.
    assert.equal("table", type(c.ws))
    assert.same({ "send" }, (function() local k = {} for n in pairs(c.ws) do k[#k + 1] = n end return k end)())
    local method = c.ws.send
    c.ws.send = nil
    assert.equal(method, c.ws.send)
    c.ws.send = method
    assert.equal(method, rawget(c.ws, "send"))
  end)

  it("errors when websocket is not accepted", function()
    local app = t.load({ upgrade = function() return require("switchyard").reject(403) end })
    assert.has_error(function() t.websocket(app, {}) end,
                     "t.websocket: app.upgrade did not accept websocket (reject 403)")
  end)

  it("drives raw protocols: data, eof, close", function()
    local events = {}
    local app = t.load({ upgrade = function(req)
      if not req:offers("echo/1") then return nil end
      return require("switchyard").accept("echo/1", {
        open = function(conn) conn:write("ready\n") end,
        data = function(conn, bytes) conn:write(bytes:upper()) end,
        eof = function(conn) events[#events + 1] = "eof"; conn:write("bye"); conn:close() end,
        close = function() events[#events + 1] = "close" end,
      })
    end })
    local c = t.raw(app, { upgrades = { "echo/1" } })
    assert.equal("ready\n", c:receive())
    c:send("ab")
    c:send("c")
    assert.equal("ABC", c:receive())
    c:shutdown()
    assert.equal("bye", c:receive())
    assert.is_true(c.closed)
    assert.same({ "eof", "close" }, events)
  end)

  it("raises on sy.tcp unless the test supplies one", function()
    local app = t.load({ request = function(_, res)
      local s = require("switchyard").tcp()
      res:send(200, s:receive("*l"))
    end })
    local r = t.request(app, {})
    assert.equal(500, r.status)
    assert.matches("sy.tcp is not available in switchyard.testing", app.errors[1].message)
    local fake = { receive = function() return "from fake" end }
    app = t.load({ request = function(_, res)
      res:send(200, require("switchyard").tcp():receive("*l"))
    end }, { tcp = function() return fake end })
    assert.equal("from fake", t.request(app, {}).body)
  end)

  it("installs opts.modules while app code runs", function()
    local fake = { get = function() return "v" end }
    local app = t.load({ request = function(_, res)
      res:send(200, require("store").get())
    end }, { modules = { store = fake } })
    assert.equal("v", t.request(app, {}).body)
    assert.is_nil(package.loaded.store)
  end)

  it("loads an app file and reports load errors", function()
    local path = os.tmpname()
    local f = assert(io.open(path, "w"))
    f:write('local sy = require "switchyard"\n'
            .. 'return { request = function(_, res) res:send(200, sy.version) end }\n')
    f:close()
    local app = t.load(path)
    assert.equal(app.sy.version, t.request(app, {}).body)
    f = assert(io.open(path, "w"))
    f:write('error("broken app")\n')
    f:close()
    assert.has_error(function() t.load(path) end)
    os.remove(path)
  end)
end)
