-- spec/integration/lua_api_spec.lua: the Lua API seen through the real server (hooks, req
-- fields, res:send later, timers, sy.now, sy.log), against spec/apps/basic.lua.
local H = require "helpers.server"

local srv

local function req_fields(raw)
  local res = H.must_roundtrip(srv.port, raw)
  assert.are.equal(200, res.status)
  return H.kv(res.body)
end

describe("Lua API", function()
  after_each(H.close_all)

  srv = H.serve("spec/apps/basic.lua")

  describe("hook errors", function()
    it("an error in app.request gives 500 and is logged", function()
      local res = H.must_roundtrip(srv.port, H.get("/error"))
      assert.are.equal(500, res.status)
      local ok, why = H.std_headers(res)
      assert(ok, why)
      assert.truthy(H.wait_for(function() return srv:log():find("boom-request", 1, true) end, 2),
                    "stderr: " .. srv:log())
    end)

    it("a res kept by a hook that then raised answers nil, 'closed' after the 500", function()
      local c = H.must_connect(srv.port)
      c:send(H.get("/error-later"))
      assert.are.equal(500, c:must_response().status)
      c:close() -- the connection is gone before the kept res is used
      local function kept()
        return H.kv(H.must_roundtrip(srv.port, H.get("/stats")).body).kept_after_error
      end
      assert.truthy(H.wait_for(function() return kept() ~= "none" end, 3), "timer did not fire")
      assert.are.equal("nil,closed", kept())
      assert.is_true(srv:alive())
    end)

    it("the server keeps serving after hook errors", function()
      for _ = 1, 5 do
        assert.are.equal(500, H.must_roundtrip(srv.port, H.get("/error")).status)
        local res = H.must_roundtrip(srv.port, H.get("/"))
        assert.are.equal(200, res.status)
        assert.are.equal("hello\n", res.body)
      end
      assert.is_true(srv:alive())
    end)
  end)

  describe("req", function()
    it("has method, target, path, query, version, scheme, remote_addr", function()
      local kv = req_fields(H.get("/req?a=1&b=two"))
      assert.are.equal("GET", kv.method)
      assert.are.equal("/req?a=1&b=two", kv.target)
      assert.are.equal("/req", kv.path)
      assert.are.equal("a=1&b=two", kv.query)
      assert.are.equal("1.1", kv.version)
      assert.are.equal("http", kv.scheme)
      assert.are.equal("127.0.0.1", kv.remote_addr)
      assert.are.equal("table", kv.headers_type)
    end)

    it("has query nil when the target has no '?'", function()
      local kv = req_fields(H.get("/req"))
      assert.are.equal("nil", kv.query_type)
    end)

    it("has version 1.0 for an HTTP/1.0 request", function()
      local kv = req_fields(H.request("GET", "/req", {}, nil, { version = "1.0" }))
      assert.are.equal("1.0", kv.version)
    end)

    it("keeps other methods as sent", function()
      local kv = req_fields(H.request("DELETE", "/req", {}))
      assert.are.equal("DELETE", kv.method)
      kv = req_fields(H.request("PATCH", "/req", {}, "p", { cl = true }))
      assert.are.equal("PATCH", kv.method)
      assert.are.equal("p", kv.body)
    end)

    it("lower-cases header names and joins repeated fields with ', '", function()
      local kv = req_fields(H.get("/req", { "X-Mixed-Case: Value1", "Accept: a/b",
                                           "accept: c/d", "X-Empty-Space:   padded   " }))
      assert.are.equal("Value1", kv["h.x-mixed-case"])
      assert.are.equal("a/b, c/d", kv["h.accept"])
      assert.are.equal("padded", kv["h.x-empty-space"])
      assert.are.equal("127.0.0.1", kv["h.host"])
      assert.is_nil(kv["h.X-Mixed-Case"])
    end)

    it("has body nil without a body and the body string with one", function()
      local kv = req_fields(H.get("/req"))
      assert.are.equal("nil", kv.body_type)
      kv = req_fields(H.request("POST", "/req", {}, "some-body", { cl = true }))
      assert.are.equal("string", kv.body_type)
      assert.are.equal("some-body", kv.body)
    end)

    it("has no upgrades list in app.request", function()
      local kv = req_fields(H.get("/req"))
      assert.are.equal("nil", kv.upgrades_type)
    end)
  end)

  describe("res", function()
    it("res:send from a timer answers later", function()
      local t0 = H.now()
      local res = H.must_roundtrip(srv.port, H.get("/later?ms=200"))
      local dt = H.now() - t0
      assert.are.equal(200, res.status)
      assert.are.equal("later", res.body)
      assert.is_true(dt >= 0.15, "answered after " .. dt .. " s, before the timer")
      local ok, why = H.std_headers(res)
      assert(ok, why)
    end)

    it("keeps the connection usable after a deferred response", function()
      local c = H.must_connect(srv.port)
      c:send(H.get("/later?ms=50"))
      assert.are.equal("later", c:must_response().body)
      c:send(H.get("/fast"))
      assert.are.equal("fast", c:must_response().body)
    end)

    it("survives a client that leaves before the deferred res:send", function()
      local function late_sends()
        return tonumber(H.kv(H.must_roundtrip(srv.port, H.get("/stats")).body).late_sends)
      end
      local before = late_sends()
      local c = H.must_connect(srv.port)
      c:send(H.get("/later?ms=100"))
      c:close()
      assert.truthy(H.wait_for(function() return late_sends() == before + 1 end, 3),
                    "timer did not fire")
      assert.is_true(srv:alive())
      assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/")).status)
    end)

    it("res:upgrade_required answers 426 with Upgrade and Connection: Upgrade", function()
      local c = H.must_connect(srv.port)
      c:send(H.get("/need-tls"))
      local res = c:must_response()
      assert.are.equal(426, res.status)
      assert.are.equal("TLS/1.3", res.headers["upgrade"])
      assert.are.equal("upgrade", (res.headers["connection"] or ""):lower())
      assert.are.equal("need tls\n", res.body)
      local ok, why = H.std_headers(res)
      assert(ok, why)
      c:send(H.get("/fast"))
      assert.are.equal("fast", c:must_response().body)
    end)
  end)

  describe("sy", function()
    it("sy.after fires in time order, :cancel() stops a timer, sy.every repeats", function()
      local res = H.must_roundtrip(srv.port, H.get("/timers"))
      assert.are.equal(200, res.status)
      local kv = H.kv(res.body)
      assert.are.equal("a,b", kv.order)
      assert.are.equal("3", kv.every)
    end)

    it("sy.now() is a float in seconds that advances with time", function()
      local kv = H.kv(H.must_roundtrip(srv.port, H.get("/now")).body)
      assert.are.equal("float", kv.type)
      local dt = tonumber(kv.t1) - tonumber(kv.t0)
      assert.is_true(dt >= 0.08 and dt < 2, "sy.now() advanced " .. dt .. " s over a 0.1 s timer")
    end)

    it("sy.log writes its arguments to stderr", function()
      assert.are.equal(200, H.must_roundtrip(srv.port, H.get("/log")).status)
      assert.truthy(H.wait_for(function()
        local log = srv:log()
        return log:find("log-marker", 1, true) and log:find("42", 1, true)
      end, 2), "stderr: " .. srv:log())
    end)
  end)
end)
