-- bench/idle_app.lua: examples/echo.lua plus GET /gc for bench/idle.sh. /gc runs two full
-- collections of the Lua heap and answers "<KiB before> <KiB after>" (collectgarbage "count"),
-- so the script can tell upgrade garbage from what each idle WebSocket keeps.
local dir = debug.getinfo(1, "S").source:match("^@(.*)/[^/]*$") or "."
local echo = dofile(dir .. "/../examples/echo.lua")

local app = {}
for k, v in pairs(echo) do app[k] = v end

function app.request(req, res)
  if req.path == "/gc" then
    local before = collectgarbage("count")
    collectgarbage("collect")
    collectgarbage("collect")
    return res:send(200, ("%.1f %.1f\n"):format(before, collectgarbage("count")))
  end
  return echo.request(req, res)
end

return app
