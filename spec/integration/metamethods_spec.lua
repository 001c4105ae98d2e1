-- spec/integration/metamethods_spec.lua: the core's C metamethods called by an app with the
-- wrong arguments, against spec/apps/metamethods.lua. Each call is refused with an error the
-- app can catch, and the server keeps serving (one server per case, so a crash shows where).
local H = require "helpers.server"
local W = require "helpers.ws"

local APP = "spec/apps/metamethods.lua"
H.TIMEOUT = 20 -- a server start per case: generous under sanitizers on a busy machine

describe("metamethods called by hand", function()
  after_each(H.close_all)

  -- Runs fn(srv), then checks the server still answers and exits cleanly.
  local function with_server(fn)
    local srv = H.must_start(APP)
    local ok, err = pcall(fn, srv)
    local res = srv:alive() and H.roundtrip(srv.port, H.get("/"))
    local alive = srv:alive()
    local code = srv:stop()
    local log = srv:log()
    srv:cleanup()
    assert(ok, tostring(err) .. "; log: " .. log)
    assert(alive and res and res.body == "fine\n", "the server stopped serving; log: " .. log)
    assert.are.equal(0, code)
  end

  for _, field in ipairs({ "remote_addr", "path", "data", "subprotocol", "id", "mine" }) do
    it("ws __index refuses what is not a WebSocket (" .. field .. ")", function()
      with_server(function(srv)
        local msg = W.call(W.open(srv.port, "/mm"), field)
        for _, how in ipairs({ "nil", "zero", "table" }) do
          assert.truthy(msg:find(how .. "=refused: [^|]*switchyard%.WebSocket expected"), msg)
        end
        assert.truthy(msg:find("self=got "), msg)
      end)
    end)
  end

  it("ws __index still answers send whatever the first argument", function()
    with_server(function(srv)
      assert.are.equal("nil=got function|zero=got function|table=got function|self=got function",
                       W.call(W.open(srv.port, "/mm"), "send"))
    end)
  end)

  it("a socket's __gc refuses what is not a socket", function()
    with_server(function(srv)
      local res = H.must_roundtrip(srv.port, H.get("/tcp-gc-nil"))
      assert.truthy(res.body:find("^refused: .*switchyard%.Socket expected"), res.body)
    end)
  end)

  it("a socket's __gc called by hand while a coroutine waits on it closes it", function()
    with_server(function(srv)
      local res = H.must_roundtrip(srv.port, H.get("/tcp-gc-waiting?port=" .. srv.port), { timeout = 20 })
      assert.are.equal("receive: nil closed\n", res.body)
    end)
  end)
end)
