-- spec/examples_spec.lua: the examples' hooks and handlers, driven by switchyard.testing.
local t = require "switchyard.testing"
local json = require "switchyard.json"

describe("examples/hello.lua", function()
  local app = t.load("examples/hello.lua")

  it("says hello", function()
    local r = t.request(app, { path = "/" })
    assert.equal(200, r.status)
    assert.equal("hello\n", r.body)
    assert.equal("text/plain", r.headers["content-type"])
  end)

  it("declines an upgrade and answers as HTTP", function()
    assert.equal("ignore", t.upgrade(app, { upgrades = { "foo/1" } }).kind)
    local r = t.request(app, { path = "/", upgrades = { "foo/1" } })
    assert.equal(200, r.status)
  end)
end)

describe("examples/echo.lua", function()
  local app = t.load("examples/echo.lua")

  it("echoes text and binary in order", function()
    local c = t.websocket(app, { path = "/" })
    c:send("one")
    c:send("\255\0", true)
    assert.same({ "one", false }, { c:receive() })
    assert.same({ "\255\0", true }, { c:receive() })
    assert.is_nil(c:receive())
  end)

  it("chooses the echo subprotocol when offered", function()
    local d = t.upgrade(app, { headers = { ["sec-websocket-protocol"] = "x, echo" } })
    assert.equal("echo", d.options.subprotocol)
    assert.equal(16 * 1024 * 1024, d.options.max_message_size)
    assert.is_nil(t.upgrade(app, {}).options.subprotocol)
  end)

  it("answers plain requests with 426 naming websocket", function()
    local r = t.request(app, { path = "/" })
    assert.equal(426, r.status)
    assert.equal("websocket", r.headers.upgrade)
  end)

  it("echoes the client's close code", function()
    local c = t.websocket(app, {})
    c:close(4001, "bye")
    assert.equal(4001, c.close_code)
  end)
end)

describe("examples/require_tls.lua", function()
  local app = t.load("examples/require_tls.lua")

  it("serves / in the clear", function()
    assert.equal("public\n", t.request(app, { path = "/" }).body)
    assert.equal(404, t.request(app, { path = "/nope" }).status)
  end)

  it("asks for TLS/1.3 on /secret over cleartext, serves it over TLS", function()
    local r = t.request(app, { path = "/secret" })
    assert.equal(426, r.status)
    assert.equal("TLS/1.3", r.headers.upgrade)
    assert.equal("Upgrade", r.headers.connection)
    assert.equal("secret\n", t.request(app, { path = "/secret", scheme = "https" }).body)
  end)

  it("accepts TLS/1.3 and refuses other offers with 426", function()
    local d = t.upgrade(app, { path = "/secret", upgrades = { "TLS/1.3" } })
    assert.same({ "accept", "TLS/1.3" }, { d.kind, d.token })
    d = t.upgrade(app, { upgrades = { "TLS/1.2" } })
    assert.same({ "upgrade_required", "TLS/1.3" }, { d.kind, d.protocols })
  end)
end)

describe("examples/chat/server.lua", function()
  local app

  before_each(function()
    t.reset()
    app = t.load("examples/chat/server.lua")
  end)

  local function events(c)
    local out = {}
    for _, m in ipairs(c:receive_all()) do out[#out + 1] = assert(json.decode(m)) end
    return out
  end

  it("serves the page on / and 405/404 elsewhere", function()
    local r = t.request(app, { path = "/" })
    assert.equal(200, r.status)
    assert.matches("<html", r.body)
    assert.equal(405, t.request(app, { method = "POST", path = "/" }).status)
    assert.equal(404, t.request(app, { path = "/nope" }).status)
  end)

  it("asks for websocket on /chat", function()
    local r = t.request(app, { path = "/chat" })
    assert.equal(426, r.status)
    assert.equal("websocket", r.headers.upgrade)
  end)

  it("announces joins, relays messages to the room, announces leaves", function()
    local ann = t.websocket(app, { path = "/chat?name=Ann" })
    local ev = events(ann)
    assert.equal(1, #ev)
    assert.same({ "join", "Ann", 1 }, { ev[1].type, ev[1].name, ev[1].members })
    assert.equal(t.clock:now(), ev[1].time)

    local bob = t.websocket(app, { path = "/chat?name=B%3Cob%3E" }) -- "B<ob>" cleaned
    local seen_by_ann, seen_by_bob = events(ann)[1], events(bob)[1]
    assert.same({ "join", "Bob", 2 }, { seen_by_ann.type, seen_by_ann.name, seen_by_ann.members })
    assert.same(seen_by_ann, seen_by_bob)

    ann:send("hello")
    for _, c in ipairs({ ann, bob }) do
      local e = events(c)
      assert.equal(1, #e)
      assert.same({ "message", "Ann", "hello" }, { e[1].type, e[1].name, e[1].text })
    end

    bob:close(1000)
    local e = events(ann)
    assert.same({ "leave", "Bob", 1 }, { e[1].type, e[1].name, e[1].members })
    assert.equal(1, app.sy.subscribers("room"))
  end)

  it("names a nameless member guest and trims long text", function()
    local c = t.websocket(app, { path = "/chat" })
    assert.equal("guest", events(c)[1].name)
    c:send(("x"):rep(5000))
    assert.equal(2000, #events(c)[1].text)
  end)

  it("closes with 4003 on a binary message", function()
    local c = t.websocket(app, { path = "/chat?name=x" })
    c:send("\1\2", true)
    assert.equal(4003, c.close_code)
    assert.equal("text only", c.close_reason)
  end)

  it("accepts with shared compression and a 64 KiB message limit", function()
    local d = t.upgrade(app, { path = "/chat" })
    assert.equal("shared", d.options.compression)
    assert.equal(64 * 1024, d.options.max_message_size)
  end)
end)
