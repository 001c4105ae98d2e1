-- spec/module_spec.lua: the switchyard Lua module loaded by a plain lua5.4 (no server running):
-- decision constructors, argument checks, and what needs a server says so.
local sy = require "switchyard"

describe("switchyard module", function()
  it("has the contract's functions", function()
    for _, name in ipairs({ "accept", "ignore", "upgrade_required", "reject", "after", "every",
                            "now", "log" }) do
      assert.is_function(sy[name], name)
    end
    assert.is_string(sy.version)
  end)

  describe("decisions", function()
    it("sy.accept keeps token, handlers and options", function()
      local h, o = { data = function() end }, { subprotocol = "chat" }
      local d = sy.accept("websocket", h, o)
      assert.are.equal("accept", d.kind)
      assert.are.equal("websocket", d.token)
      assert.are.equal(h, d.handlers)
      assert.are.equal(o, d.options)
    end)

    it("sy.accept rejects a missing or empty token and non-table handlers", function()
      assert.has_error(function() sy.accept() end)
      assert.has_error(function() sy.accept("") end)
      assert.has_error(function() sy.accept("x", "not a table") end)
      assert.has_error(function() sy.accept("x", {}, 42) end)
    end)

    it("sy.ignore is a decision of its own kind", function()
      assert.are.equal("ignore", sy.ignore().kind)
    end)

    it("sy.upgrade_required keeps protocols and body, refuses control characters", function()
      local d = sy.upgrade_required("TLS/1.3", "use TLS")
      assert.are.equal("upgrade_required", d.kind)
      assert.are.equal("TLS/1.3", d.protocols)
      assert.are.equal("use TLS", d.body)
      assert.has_error(function() sy.upgrade_required("TLS/1.3\r\nX: y") end)
      assert.has_error(function() sy.upgrade_required("") end)
    end)

    it("sy.reject checks the status range", function()
      local d = sy.reject(403, "no", { ["x-why"] = "policy" })
      assert.are.equal("reject", d.kind)
      assert.are.equal(403, d.status)
      assert.are.equal("no", d.body)
      assert.are.equal("policy", d.headers["x-why"])
      assert.has_error(function() sy.reject(101) end)
      assert.has_error(function() sy.reject(1000) end)
      assert.has_error(function() sy.reject("x") end)
    end)

    it("decisions share one metatable, distinct from plain tables", function()
      assert.are.equal(getmetatable(sy.ignore()), getmetatable(sy.accept("x")))
      assert.is_not_nil(getmetatable(sy.ignore()))
    end)
  end)

  it("sy.now returns wall-clock seconds", function()
    local t = sy.now()
    assert.is_number(t)
    assert.is_true(math.abs(t - os.time()) < 5)
  end)

  it("timers need a running server and say so", function()
    local ok, err = pcall(sy.after, 1, function() end)
    assert.is_false(ok)
    assert.matches("running server", err)
    assert.has_error(function() sy.after(-1, function() end) end)
    assert.has_error(function() sy.every(0, function() end) end)
    assert.has_error(function() sy.after(1, "nope") end)
  end)

  it("sy.log accepts the four levels and refuses others", function()
    assert.has_no_error(function() sy.log("debug", "x", 1, true, nil) end)
    assert.has_error(function() sy.log("loud", "x") end)
  end)
end)
