-- spec/integration/handle_fields_spec.lua: the app's own fields on ws and conn handles, and
-- read-only built-in names, against spec/apps/handle_fields.lua.
local H = require "helpers.server"
local W = require "helpers.ws"

describe("fields on handles", function()
  after_each(H.close_all)
  local srv = H.serve("spec/apps/handle_fields.lua")

  it("conn keeps the app's fields; built-in names are read-only", function()
    local c = H.must_connect(srv.port)
    c:send(H.request("GET", "/", { "Upgrade: fields/1", "Connection: Upgrade" }))
    assert.are.equal(101, c:must_response().status)
    c:send("a")
    local line = c:line()
    assert.truthy(line:find("^user=alice seen=1 "), line)
    for _, k in ipairs({ "path", "write", "data", "remote_addr" }) do
      -- The message leads with the app's file:line of the assignment.
      assert.truthy(line:find(k .. ":[^|]*handle_fields%.lua:%d+: conn%." .. k .. " is read%-only"),
                    line)
    end
    c:send("b")
    assert.truthy(c:line():find("^user=alice seen=2 "))
  end)

  it("ws keeps the app's fields; built-in names are read-only", function()
    local c = W.open(srv.port, "/fields")
    local msg = W.call(c, "one")
    assert.truthy(msg:find("^user=bob count=1 send=function "), msg)
    -- A table whose one own field is send, which nil brings back; its metatable cannot be
    -- replaced and the app sees none with a __gc.
    assert.truthy(msg:find(" type=table own=send back=true mt=table,nil,nil,refused,refused ",
                           1, true), msg)
    for _, k in ipairs({ "path", "ping", "data", "subprotocol" }) do
      assert.truthy(msg:find(k .. ":[^|]*handle_fields%.lua:%d+: ws%." .. k .. " is read%-only"),
                    msg)
    end
    assert.truthy(W.call(c, "two"):find("^user=bob count=2 "))
    assert.is_nil(srv:log():find("attempt to index", 1, true))
  end)
end)
