-- spec/apps/accept_memory.lua: accepts WebSockets and raw streams with the Lua state filled to
-- its max_memory, so that the accept meets a memory error at some step or other.
--   /fill?n=N  app.upgrade fills the state to the brim, gives back about N bytes, then
--              accepts (the offered token, with handlers and options.data); the ballast is
--              dropped by a timer right after.
--   /handles   connection handles anchored in the registry (0 once every connection closed):
--              raw handles, WebSocket faces (tables) and their states (userdata).
local sy = require "switchyard"

local ballast

local handlers = {
  open = function(c) c.data.opened = true end,
  data = function(c, bytes) c:write(bytes) end,
}

-- A list of small blocks (no block that fails to grow leaves room behind it), filled until an
-- allocation fails, collected, and filled again; then a reserve of about n bytes made before
-- the filling is given back.
local function add(i) ballast = { ballast, ("x"):rep(40) .. i } end

local function fill(n)
  ballast = nil
  collectgarbage()
  local reserve = ("y"):rep(n + 64) -- a long string: exactly one block
  for _ = 1, 3 do
    local i = 0
    repeat i = i + 1 until not pcall(add, i)
    collectgarbage()
  end
  reserve = nil
  collectgarbage()
end

return {
  _handlers = handlers, -- typo_memory.lua adds a misspelled one
  lua = { max_memory = 1024 * 1024 },
  upgrade = function(req)
    local n = tonumber((req.query or ""):match("n=(%d+)")) or 0
    sy.after(0, function() ballast = nil; collectgarbage() end)
    fill(n)
    return sy.accept(req.upgrades[1].name, handlers, { data = { n = n } })
  end,
  request = function(req, res)
    if req.path == "/handles" then
      collectgarbage()
      local count = 0
      for _, v in pairs(debug.getregistry()) do
        local mt = (type(v) == "userdata" or type(v) == "table") and debug.getmetatable(v)
        local name = type(mt) == "table" and mt.__name
        if name == "switchyard.Conn" or name == "switchyard.WebSocket"
            or name == "switchyard.WebSocket.state" then
          count = count + 1
        end
      end
      res:send(200, tostring(count))
      return
    end
    res:send(200, "fine\n")
  end,
}
