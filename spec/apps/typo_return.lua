-- An app.upgrade that makes a decision and forgets to return it.
local sy = require "switchyard"

local app = {}

function app.upgrade(req)
  if req.path == "/forgot" then
    sy.accept("echo", {})
  elseif req.path == "/kept" then
    return sy.accept("echo", {})
  end
end

return app
