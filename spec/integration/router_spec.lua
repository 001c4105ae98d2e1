-- spec/integration/router_spec.lua: an app built on switchyard.router (spec/apps/router.lua)
-- in the real server: captures, 404, 405 with Allow, HEAD, 426 for upgrade-only paths, and
-- upgrade routes for WebSocket and a raw protocol, over real sockets.
local H = require "helpers.server"
local W = require "helpers.ws"
local json = require "switchyard.json"

describe("switchyard.router in the server", function()
  after_each(H.close_all)

  local srv = H.serve("spec/apps/router.lua")

  it("routes with percent-decoded captures, static segments first", function()
    local res = H.must_roundtrip(srv.port, H.get("/rooms/l%C3%B6bby?x=1&x=2&y=a+b"))
    assert.are.equal(200, res.status)
    assert.are.same({ room = "löbby", query = { x = "2", y = "a b" } }, json.decode(res.body))
    res = H.must_roundtrip(srv.port, H.get("/rooms/new"))
    assert.are.same({ new = true }, json.decode(res.body))
    res = H.must_roundtrip(srv.port, H.get("/files/a/b%20c"))
    assert.are.equal("a/b c", res.body)
  end)

  it("parses a posted form", function()
    local res = H.must_roundtrip(srv.port, H.request("POST", "/rooms/7",
      { "Content-Type: application/x-www-form-urlencoded" }, "name=Ada+L&n=1", { cl = true }))
    assert.are.equal(201, res.status)
    assert.are.same({ room = "7", form = { name = "Ada L", n = "1" } }, json.decode(res.body))
  end)

  it("answers 404 for an unknown path and 405 with Allow for a wrong method", function()
    assert.are.equal(404, H.must_roundtrip(srv.port, H.get("/nothing")).status)
    assert.are.equal(404, H.must_roundtrip(srv.port, H.get("/rooms/")).status)
    local res = H.must_roundtrip(srv.port, H.request("DELETE", "/rooms/1"))
    assert.are.equal(405, res.status)
    assert.are.equal("GET, HEAD, OPTIONS, POST", res.headers["allow"])
    assert.is_true(H.std_headers(res))
  end)

  it("serves HEAD from the GET route without a body", function()
    local res = H.must_roundtrip(srv.port, H.request("HEAD", "/rooms/1"), { head = true })
    assert.are.equal(200, res.status)
    assert.are.equal("", res.body)
  end)

  it("accepts a WebSocket on its upgrade route, with the capture", function()
    local c = W.open(srv.port, "/chat/blue")
    assert.are.same({ "text", "joined blue" }, { W.read(c) })
    W.text(c, "hi")
    assert.are.same({ "text", "blue: hi" }, { W.read(c) })
    W.close(c, 1000)
  end)

  it("answers 426 on an upgrade-only path for a plain request or another token", function()
    local res = H.must_roundtrip(srv.port, H.get("/chat/blue"))
    assert.are.equal(426, res.status)
    assert.are.equal("websocket", res.headers["upgrade"])
    res = H.must_roundtrip(srv.port, H.get("/chat/blue", { "Upgrade: lines/1",
                                                          "Connection: Upgrade" }))
    assert.are.equal(426, res.status)
    assert.are.equal("websocket", res.headers["upgrade"])
  end)

  it("ignores an offer on a path without upgrade routes (the request goes on as HTTP)", function()
    local res = H.must_roundtrip(srv.port, H.get("/chat", { "Upgrade: lines/1",
                                                            "Connection: Upgrade" }))
    assert.are.equal(200, res.status)
    assert.are.equal("the chat page\n", res.body)
  end)

  it("switches a raw protocol whose lines arrive in pieces", function()
    local c = H.must_connect(srv.port)
    c:send(H.request("GET", "/lines", { "Upgrade: lines/1", "Connection: Upgrade" }) .. "ab")
    assert.are.equal(101, c:must_response().status)
    c:send("c\r\nde")
    assert.are.equal("ABC", c:line())
    c:send("f\n" .. ("x"):rep(40))
    assert.are.equal("DEF", c:line())
    assert.are.equal("ERR line too long", c:line())
    assert.is_true(c:expect_closed())
  end)
end)
