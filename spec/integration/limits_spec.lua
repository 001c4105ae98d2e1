-- spec/integration/limits_spec.lua: limits set by the app (app.http) apply on the wire, and a
-- bad limit stops the app from loading.
local H = require "helpers.server"
local socket = require "socket"

describe("app.http limits", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/limits.lua")

  it("accepts a body at max_body and answers 413 past it", function()
    local ok = H.must_roundtrip(srv.port, H.request("POST", "/", nil, "0123456789", { cl = true }))
    assert.are.equal(200, ok.status)
    assert.are.equal("ok 0123456789", ok.body)
    local big = H.must_roundtrip(srv.port, H.request("POST", "/", nil, "0123456789a", { cl = true }))
    assert.are.equal(413, big.status)
  end)

  it("answers 431 for a head over max_head and for too many fields", function()
    local res = H.must_roundtrip(srv.port, H.get("/", { "X-Big: " .. string.rep("a", 400) }))
    assert.are.equal(431, res.status)
    res = H.must_roundtrip(srv.port, H.get("/", { "A: 1", "B: 2", "C: 3", "D: 4" }))
    assert.are.equal(431, res.status)
    res = H.must_roundtrip(srv.port, H.get("/", { "A: 1", "B: 2", "C: 3" }))
    assert.are.equal(200, res.status)
  end)

  it("closes an idle keep-alive connection after keepalive_timeout", function()
    local c = H.must_connect(srv.port)
    c:send(H.get("/"))
    assert.are.equal(200, c:must_response().status)
    local t0 = socket.gettime()
    assert(c:expect_closed(20))
    local waited = socket.gettime() - t0
    assert.is_true(waited > 0.3 and waited < 15, "closed after " .. waited .. " s")
  end)

  it("refuses to load an unknown or out-of-range limit", function()
    local dir = os.tmpname()
    for _, case in ipairs({
      { "return { http = { max_bod = 1 } }", "unknown app.http option 'max_bod'" },
      { "return { http = { max_head = 10 } }", "app.http.max_head" },
      { "return { http = 5 }", "app.http must be a table" },
    }) do
      local f = assert(io.open(dir, "w"))
      f:write(case[1])
      f:close()
      local p = io.popen(H.shquote(H.bin()) .. " --check " .. H.shquote(dir) .. " 2>&1; echo rc=$?")
      local out = p:read("a")
      p:close()
      assert.truthy(out:find(case[2], 1, true), out)
      assert.truthy(out:find("rc=1", 1, true), out)
    end
    os.remove(dir)
  end)
end)
