-- spec/router_spec.lua: switchyard.router with plain tables for req and res (no server).
local router = require "switchyard.router"
local sy = require "switchyard"

local function req(method, path, offers)
  local r = { method = method, path = path, headers = {} }
  function r:offers(token)
    for _, o in ipairs(offers or {}) do
      if o:lower() == token:lower() then return { name = o } end
    end
    return nil
  end
  return r
end

local function res()
  local r = {}
  function r:send(status, body, headers)
    self.status, self.body, self.headers = status, body, headers or {}
    return true
  end
  function r:upgrade_required(protocols, body)
    self.status, self.body, self.headers = 426, body, { upgrade = protocols }
    return true
  end
  return r
end

-- Runs r for method + path; returns the res and what the route saw.
local function run(r, method, path)
  local out = res()
  r:handle(req(method, path), out)
  return out
end

local function tagged(name)
  return function(_, out, params) out:send(200, name, { params = params }) end
end

describe("switchyard.router", function()
  it("routes by method and path, with captures", function()
    local r = router.new()
    r:get("/rooms/:id", tagged("room"))
    r:post("/rooms/:id/messages/:n", tagged("post"))
    local out = run(r, "GET", "/rooms/42")
    assert.are.equal(200, out.status)
    assert.are.equal("room", out.body)
    assert.are.same({ id = "42" }, out.headers.params)
    out = run(r, "POST", "/rooms/a/messages/7")
    assert.are.same({ id = "a", n = "7" }, out.headers.params)
  end)

  it("has a method for every common verb, and route() for lists", function()
    local r = router.new()
    for _, m in ipairs({ "get", "post", "put", "delete", "patch", "head", "options" }) do
      r[m](r, "/" .. m, tagged(m))
      assert.are.equal(m, run(r, m:upper(), "/" .. m).body)
    end
    r:route({ "PUT", "PROPFIND" }, "/dav", tagged("dav"))
    assert.are.equal("dav", run(r, "PROPFIND", "/dav").body)
    assert.are.equal("dav", run(r, "PUT", "/dav").body)
  end)

  it("percent-decodes captures but keeps + as is", function()
    local r = router.new()
    r:get("/u/:name", tagged("u"))
    local out = run(r, "GET", "/u/caf%C3%A9%2Fb+c")
    assert.are.same({ name = "café/b+c" }, out.headers.params)
  end)

  it("answers 404 for an unknown path, 405 with Allow for a wrong method", function()
    local r = router.new()
    r:get("/a", tagged("a"))
    r:post("/a", tagged("a"))
    assert.are.equal(404, run(r, "GET", "/b").status)
    local out = run(r, "DELETE", "/a")
    assert.are.equal(405, out.status)
    assert.are.equal("GET, HEAD, OPTIONS, POST", out.headers.allow)
  end)

  it("answers OPTIONS on a known path with 204 and Allow", function()
    local r = router.new()
    r:put("/x/:id", tagged("x"))
    local out = run(r, "OPTIONS", "/x/1")
    assert.are.equal(204, out.status)
    assert.are.equal("OPTIONS, PUT", out.headers.allow)
  end)

  it("lets HEAD use the GET route unless HEAD has its own", function()
    local r = router.new()
    r:get("/g", tagged("get"))
    r:get("/h", tagged("get"))
    r:head("/h", tagged("head"))
    assert.are.equal("get", run(r, "HEAD", "/g").body)
    assert.are.equal("head", run(r, "HEAD", "/h").body)
    assert.are.equal(405, run(r, "HEAD", (function() r:post("/p", tagged("p")) return "/p" end)()).status)
  end)

  it("treats trailing slashes as significant", function()
    local r = router.new()
    r:get("/rooms", tagged("list"))
    r:get("/dir/", tagged("dir"))
    r:get("/", tagged("root"))
    assert.are.equal("list", run(r, "GET", "/rooms").body)
    assert.are.equal(404, run(r, "GET", "/rooms/").status)
    assert.are.equal("dir", run(r, "GET", "/dir/").body)
    assert.are.equal(404, run(r, "GET", "/dir").status)
    assert.are.equal("root", run(r, "GET", "/").body)
  end)

  it("never matches a capture to an empty segment", function()
    local r = router.new()
    r:get("/a/:id/b", tagged("x"))
    assert.are.equal(404, run(r, "GET", "/a//b").status)
    assert.are.equal(404, run(r, "GET", "/a/").status)
  end)

  it("prefers static segments over captures whatever the order", function()
    local r = router.new()
    r:get("/rooms/:id", tagged("id"))
    r:get("/rooms/new", tagged("new"))
    r:get("/rooms/:id/edit", tagged("edit-id"))
    r:get("/rooms/*rest", tagged("splat"))
    assert.are.equal("new", run(r, "GET", "/rooms/new").body)
    assert.are.equal("id", run(r, "GET", "/rooms/old").body)
    -- backtracks: /rooms/new/edit has no static route, the capture path has one
    assert.are.equal("edit-id", run(r, "GET", "/rooms/new/edit").body)
    assert.are.equal("splat", run(r, "GET", "/rooms/a/b/c").body)
    assert.are.same({ rest = "a/b/c" }, run(r, "GET", "/rooms/a/b/c").headers.params)
  end)

  it("captures the rest of the path with a splat, empty included", function()
    local r = router.new()
    r:get("/files/*path", tagged("f"))
    assert.are.same({ path = "a/b%/c d" }, run(r, "GET", "/files/a/b%25/c%20d").headers.params)
    assert.are.same({ path = "" }, run(r, "GET", "/files/").headers.params)
    assert.are.equal(404, run(r, "GET", "/files").status)
  end)

  it("decides 405 by the path's methods, not by the capture names", function()
    local r = router.new()
    r:get("/a/:id/x", tagged("x"))
    r:post("/a/:name/y", tagged("y"))
    assert.are.same({ name = "3" }, run(r, "POST", "/a/3/y").headers.params)
    assert.are.equal("GET, HEAD, OPTIONS", run(r, "POST", "/a/3/x").headers.allow)
  end)

  it("calls opts.not_found for unknown paths", function()
    local r = router.new({ not_found = function(_, out) out:send(404, "custom") end })
    assert.are.equal("custom", run(r, "GET", "/nothing").body)
  end)

  it("returns the route's return value from handle, and works as app.request", function()
    local r = router.new()
    r:get("/", function() return "done" end)
    local handler = r:request_handler()
    assert.are.equal("done", handler(req("GET", "/"), res()))
  end)

  it("raises at registration on bad patterns, naming them", function()
    local r = router.new()
    local bad = { "rooms", "/a//b", "/a/:", "/a/:1x", "/*rest/more", "/a/:id/:id", "/a:b",
                  "/a b", "/a?b" }
    for _, p in ipairs(bad) do
      local ok, err = pcall(r.get, r, p, tagged("x"))
      assert.is_false(ok, p)
      assert.is_truthy(err:find(p, 1, true), err)
    end
    assert.has_error(function() r:get(42, tagged("x")) end)
    assert.has_error(function() r:get("/ok", "not a function") end)
    assert.has_error(function() r:route("BAD METHOD", "/ok", tagged("x")) end)
    assert.has_error(function() router.new({ notfound = function() end }) end)
  end)

  it("raises on a duplicate route, naming both patterns", function()
    local r = router.new()
    r:get("/a/:id", tagged("x"))
    local ok, err = pcall(function() r:get("/a/:name", tagged("y")) end)
    assert.is_false(ok)
    assert.is_truthy(err:find("/a/:name", 1, true) and err:find("/a/:id", 1, true), err)
    assert.is_truthy(err:find("router_spec.lua", 1, true), "error points at the caller: " .. err)
    assert.has_no_error(function() r:post("/a/:id", tagged("z")) end)
    r:upgrade("/ws", "websocket", function() end)
    assert.has_error(function() r:upgrade("/ws", "WebSocket", function() end) end)
  end)

  describe("upgrades", function()
    local function upgrade(r, path, offers)
      return r:handle_upgrade(req("GET", path, offers))
    end

    it("calls the route whose token is offered, with captures", function()
      local r = router.new()
      local seen
      r:upgrade("/ws/:room", "websocket", function(_, params)
        seen = params
        return sy.accept("websocket", {})
      end)
      local d = upgrade(r, "/ws/l%C3%B6bby", { "websocket" })
      assert.are.equal("accept", d.kind)
      assert.are.same({ room = "löbby" }, seen)
    end)

    it("tries a path's routes in registration order", function()
      local r = router.new()
      r:upgrade("/x", "h2c", function() return "h2c" end)
      r:upgrade("/x", "websocket", function() return "ws" end)
      assert.are.equal("ws", upgrade(r, "/x", { "websocket" }))
      assert.are.equal("h2c", upgrade(r, "/x", { "websocket", "h2c" }))
    end)

    it("returns nil (ignore) for a path without upgrade routes, or the fallback", function()
      local r = router.new()
      r:upgrade("/ws", "websocket", function() return "ws" end)
      assert.is_nil(upgrade(r, "/other", { "websocket" }))
      local r2 = router.new({ upgrade_fallback = function() return "fallback" end })
      assert.are.equal("fallback", upgrade(r2, "/other", { "websocket" }))
    end)

    it("answers 426 naming the tokens when none of them is offered", function()
      local r = router.new()
      r:upgrade("/ws", "websocket", function() return "ws" end)
      r:upgrade("/ws", "chat/2", function() return "chat" end)
      local d = upgrade(r, "/ws", { "h2c" })
      assert.are.equal("upgrade_required", d.kind)
      assert.are.equal("websocket, chat/2", d.protocols)
    end)

    it("answers a plain request for an upgrade-only path with 426", function()
      local r = router.new()
      r:upgrade("/ws", "websocket", function() end)
      local out = run(r, "GET", "/ws")
      assert.are.equal(426, out.status)
      assert.are.equal("websocket", out.headers.upgrade)
    end)

    it("keeps HTTP routes and upgrade routes of one path apart", function()
      local r = router.new()
      r:get("/chat", tagged("page"))
      r:upgrade("/chat", "websocket", function() return "ws" end)
      assert.are.equal("page", run(r, "GET", "/chat").body)
      assert.are.equal("ws", r:upgrade_handler()(req("GET", "/chat", { "websocket" })))
    end)
  end)
end)
