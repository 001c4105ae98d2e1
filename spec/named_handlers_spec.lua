-- switchyard.testing follows named handler sets (sy.accept(token, "name")) as the server
-- does: each event looks the name up in the app's handlers, so replacing app.handlers[name]
-- (what a reload does) reaches live connections, while a handler table keeps its code.
local t = require "switchyard.testing"

describe("named handler sets in switchyard.testing", function()
  local function app_table(version)
    local app = { handlers = {} }
    app.handlers.chat = {
      message = function(ws, m) ws:send(version .. ":" .. m) end,
    }
    function app.upgrade(req)
      local sy = require "switchyard"
      if req.path == "/table" then return sy.accept("websocket", app.handlers.chat) end
      if req.path == "/typo" then return sy.accept("websocket", "chta") end
      return sy.accept("websocket", "chat")
    end
    return app
  end

  it("runs the set the app has now; a table keeps its code", function()
    local hooks = app_table("v1")
    local app = t.load(hooks)
    local named, tbl = t.websocket(app, { path = "/" }), t.websocket(app, { path = "/table" })
    named:send("a")
    tbl:send("a")
    assert.equal("v1:a", named:receive())
    assert.equal("v1:a", tbl:receive())
    hooks.handlers.chat = app_table("v2").handlers.chat
    named:send("b")
    tbl:send("b")
    assert.equal("v2:b", named:receive())
    assert.equal("v1:b", tbl:receive())
  end)

  it("refuses a name that is not in app.handlers", function()
    local app = t.load(app_table("v1"))
    assert.has_error(function() t.websocket(app, { path = "/typo" }) end)
    assert.matches("no handler set 'chta' in app.handlers", app.errors[1].message)
  end)
end)
