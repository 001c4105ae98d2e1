-- spec/integration/raw_halfclose_spec.lua: the peer's half-close of a raw connection (eof
-- handler), conn:shutdown() and the shutdown event at server stop, against
-- spec/apps/raw_events.lua. Waits are bounded by generous caps; nothing asserts speed.
local H = require "helpers.server"

local APP = "spec/apps/raw_events.lua"

local upgrade, stats, stat = H.must_upgrade, H.stats, H.stat

describe("raw half-close", function()
  after_each(H.close_all)
  local srv = H.serve(APP)

  it("delivers eof(conn) and keeps the connection writable", function()
    local c = upgrade(srv.port, "half/1")
    c:send("abcdef")
    c:shutdown_write()
    assert.are.equal("got 6 bytes", c:line(10))
    assert(c:expect_closed(10))
    assert.truthy(H.wait_for(function() return stat(srv.port, "closes_half") == 1 end, 10))
    assert.are.equal(1, stat(srv.port, "eofs_half"))
  end)

  it("the app may answer after eof, later, from a timer", function()
    local c = upgrade(srv.port, "halflater/1")
    c:send("0123456789")
    c:shutdown_write()
    assert.are.equal("late 10", c:line(10))
    assert(c:expect_closed(10))
    assert.are.equal("true", stats(srv.port).halflater_write)
  end)

  it("without an eof handler the peer's EOF closes the connection", function()
    local c = upgrade(srv.port, "noeof/1")
    c:send("z\n")
    assert.are.equal("z", c:line())
    c:shutdown_write()
    assert(c:expect_closed(10))
    assert.truthy(H.wait_for(function() return stat(srv.port, "closes_noeof") == 1 end, 10))
  end)

  it("conn:shutdown() sends our FIN and keeps reading; both sides done closes", function()
    local c = upgrade(srv.port, "shut/1")
    local data, how = c:read_all(10)
    assert.are.equal("hello\n", data)
    assert.are.equal("closed", how, "no FIN after conn:shutdown()")
    assert.are.equal("nil closed", stats(srv.port).shut_write)
    assert(c:send("after our FIN"))
    assert.truthy(H.wait_for(function() return stats(srv.port).shut_got == "after our FIN" end, 10),
                  "bytes after conn:shutdown() not delivered")
    assert.are.equal(0, stat(srv.port, "closes_shut"))
    c:shutdown_write()
    assert.truthy(H.wait_for(function() return stat(srv.port, "closes_shut") == 1 end, 10),
                  "not closed once both sides were done")
  end)
end)

describe("raw shutdown event", function()
  after_each(H.close_all)

  it("runs shutdown(conn) at server stop", function()
    local srv = H.must_start(APP)
    local c = upgrade(srv.port, "stop/1")
    c:send("x\n")
    assert.are.equal("x", c:line())
    os.execute("kill -TERM " .. srv.pid)
    assert.are.equal("bye", c:line(10))
    assert(c:expect_closed(10))
    -- No connection is left: the server exits by itself.
    assert.truthy(H.wait_for(function() return not srv:alive() end, 10), "server still running")
    assert.are.equal(0, srv:stop())
    srv:cleanup()
  end)

  it("a connection the shutdown handler keeps open is closed when the grace period ends", function()
    local srv = H.must_start(APP)
    local c = upgrade(srv.port, "linger/1")
    c:send("x\n")
    assert.are.equal("x", c:line())
    os.execute("kill -TERM " .. srv.pid)
    assert.are.equal("stopping", c:line(10))
    -- Still writable after the event: the app's echo answers.
    c:send("y\n")
    assert.are.equal("y", c:line(10))
    assert(c:expect_closed(20))
    assert.truthy(H.wait_for(function() return not srv:alive() end, 10), "server still running")
    assert.are.equal(0, srv:stop())
    srv:cleanup()
  end)
end)
