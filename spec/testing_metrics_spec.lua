-- spec/testing_metrics_spec.lua: sy.counter and sy.gauge in switchyard.testing (no server), with
-- the server's rules, so an app that declares metrics loads and can be checked in a spec.
local t = require "switchyard.testing"

describe("switchyard.testing metrics", function()
  before_each(function() t.reset() end)

  it("counts what the hooks count, by label set", function()
    local app = t.load({
      request = function(req, res)
        local sy = require "switchyard"
        sy.counter("hits_total", "Hits"):inc(1, { path = req.path })
        sy.gauge("rooms"):set(5)
        res:send(200, "ok")
      end,
    })
    t.request(app, { method = "GET", path = "/a" })
    t.request(app, { method = "GET", path = "/a" })
    t.request(app, { method = "GET", path = "/b" })
    local hits = app.sy.counter("hits_total") -- the same metric again
    assert.equal(2, hits:value({ path = "/a" }))
    assert.equal(1, hits:value({ path = "/b" }))
    assert.equal(0, hits:value())
    local rooms = app.sy.gauge("rooms")
    assert.equal(5, rooms:value())
    rooms:inc(); rooms:dec(3)
    assert.equal(3, rooms:value())
  end)

  it("refuses what the server refuses", function()
    local sy = t.load({}).sy
    local c = sy.counter("c_total")
    assert.has_error(function() sy.counter("bad-name") end)
    assert.has_error(function() sy.gauge("switchyard_x") end)
    assert.has_error(function() sy.gauge("c_total") end)
    assert.has_error(function() c:inc(-1) end)
    assert.has_error(function() c:set(1) end)
    assert.has_error(function() c:inc(1, { ["a-b"] = "x" }) end)
    assert.has_error(function() sy.gauge("g"):set(0 / 0) end)
  end)
end)
