-- spec/integration/decisions_spec.lua: decisions are opaque values: an app that edits one, or
-- returns something else, gets a 500 and a log line that says why; the server neither crashes
-- nor leaves the request unanswered. Against spec/apps/decisions.lua.
local H = require "helpers.server"
local W = require "helpers.ws"

local function up(path, token, extra)
  local headers = { "Upgrade: " .. token, "Connection: Upgrade" }
  for _, h in ipairs(extra or {}) do headers[#headers + 1] = h end
  return H.request("GET", path, headers)
end

local function ws_up(path)
  return up(path, "websocket", { "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                 "Sec-WebSocket-Version: 13" })
end

describe("decisions", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/decisions.lua")

  -- The mistake is answered 500 on the same connection, which then serves the next request.
  local function answered_500(raw, log_text)
    local c = H.must_connect(srv.port)
    c:send(raw)
    local res, err = c:read_response({ timeout = 10 })
    assert(res, "no answer: " .. tostring(err) .. "; alive=" .. tostring(srv:alive())
                .. "; log: " .. srv:log())
    assert.are.equal(500, res.status)
    c:send(H.get("/"))
    assert.are.equal("fine\n", c:must_response().body)
    assert.is_true(srv:alive())
    if log_text then
      assert.truthy(H.wait_for(function() return srv:log():find(log_text, 1, true) end, 5),
                    "log lacks " .. log_text .. ": " .. srv:log())
    end
  end

  it("d.kind = nil raises in the hook: 500, no crash", function()
    answered_500(ws_up("/edit-kind"), "cannot be changed")
  end)

  it("d.token = nil raises in the hook: 500, nothing accepted '(null)'", function()
    answered_500(ws_up("/edit-token"), "cannot be changed")
    assert.is_nil(srv:log():find("(null)", 1, true), srv:log())
  end)

  it("d.status = 42 raises in the hook: 500, the request does not hang", function()
    answered_500(up("/edit-status", "echo/1"), "cannot be changed")
  end)

  it("d.protocols = nil raises in the hook: 500", function()
    answered_500(up("/edit-proto", "echo/1"), "cannot be changed")
  end)

  it("a decision whose edit was caught with pcall is still the original", function()
    local res = H.must_roundtrip(srv.port, up("/caught-edit", "echo/1"))
    assert.are.equal(403, res.status)
    assert.are.equal("intact", res.body)
  end)

  it("sy.reject(42) raises where it is made: 500 naming the status range", function()
    answered_500(up("/reject-42", "echo/1"), "status must be 200..599")
  end)

  it("a wrong return value: 500, the log names the type and the hook's file:line", function()
    answered_500(up("/bad-return", "echo/1"), "returned a number")
    assert.truthy(srv:log():find("decisions.lua:%d+"), srv:log())
    answered_500(up("/bad-table", "echo/1"), "returned a table")
  end)

  it("decisions read as strings and fields, in the server's own state", function()
    local res = H.must_roundtrip(srv.port, H.get("/tostring"))
    assert.are.equal("switchyard.Decision(reject 403) reject 403\n"
                     .. "switchyard.Decision(accept websocket) accept websocket\n", res.body)
  end)

  it("options.data becomes conn.data (raw)", function()
    local c = H.must_connect(srv.port)
    c:send(up("/data", "echo/1"))
    assert.are.equal(101, c:must_response().status)
    assert.are.equal("user=bob", c:line())
  end)

  it("options.data becomes ws.data (WebSocket)", function()
    local c = W.open(srv.port, "/data")
    assert.are.same({ "text", "user=ann" }, { W.read(c, 5) })
  end)
end)
