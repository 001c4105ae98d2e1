-- Names the app may add of its own: keys starting with '_', and functions under names far from
-- every hook (a host calls them with sy_server_call_lua).
local sy = require "switchyard"

local app = { _rooms = {}, _version = 3 }

function app.tick(n) return n end

function app.upgrade(req)
  return sy.accept("echo", { data = function() end, _state = {} }, { idle_timeout = 10 })
end

function app.request(req, res) res:send(200, "fine\n") end

return app
