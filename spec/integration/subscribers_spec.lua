-- spec/integration/subscribers_spec.lua: sy.subscribers(topic), the number of this server's
-- WebSockets subscribed to a topic that a publish reaches now, against
-- spec/apps/subscribers.lua with the frame client of spec/helpers/ws.lua. Every wait is
-- bounded.
local H = require "helpers.server"
local W = require "helpers.ws"

describe("sy.subscribers", function()
  local srv = H.serve("spec/apps/subscribers.lua")

  local function finish(c)
    W.close(c, 1000, "done")
    assert.are.equal("close", (W.read(c)))
  end

  it("counts subscriptions as they come and go", function()
    local a, b = W.open(srv.port, "/"), W.open(srv.port, "/")
    assert.are.equal("0", W.call(a, "count room"))
    assert.are.equal("ok", W.call(a, "sub room"))
    assert.are.equal("ok", W.call(b, "sub room"))
    assert.are.equal("ok", W.call(b, "sub room")) -- twice is one subscription
    assert.are.equal("2", W.call(a, "count room"))
    assert.are.equal("0", W.call(a, "count roo"))
    assert.are.equal("ok", W.call(b, "unsub room"))
    assert.are.equal("1", W.call(b, "count room"))
    assert.are.equal("ok", W.call(b, "sub room"))
    -- A connection that goes leaves its topics.
    finish(b)
    assert.is_truthy(H.wait_for(function() return W.call(a, "count room") == "1" end))
    finish(a)
  end)

  it("leaves out a WebSocket whose closing handshake started", function()
    local watcher, c = W.open(srv.port, "/"), W.open(srv.port, "/")
    assert.are.equal("ok", W.call(watcher, "sub report"))
    assert.are.equal("ok", W.call(c, "sub room"))
    W.text(c, "close-count room")
    assert.are.equal("1 0", W.must_text(watcher))
    assert.are.equal("close", (W.read(c)))
    finish(watcher)
  end)

  it("needs a topic", function()
    local c = W.open(srv.port, "/")
    local answer = W.call(c, "bad")
    assert.is_truthy(answer:find("^false .*string expected"), answer)
    finish(c)
  end)
end)
