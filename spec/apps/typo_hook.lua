-- A misspelled hook: app.upgarde is never called; the server refuses to load it.
local sy = require "switchyard"

local app = {}

function app.upgarde(req)
  return sy.accept("echo", {})
end

return app
