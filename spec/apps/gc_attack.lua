-- spec/apps/gc_attack.lua: an app that tries to run code in a __gc finalizer, where Lua turns
-- debug hooks off and app.lua.max_time cannot stop it. Each path tries one way and then
-- collects garbage inside the hook, so a finalizer that got through runs (for ever) right
-- there; the answer says whether the attempt was refused.
local sy = require "switchyard"

local function forever() while true do end end

local attacks = {
  ["/setmetatable"] = function()
    setmetatable({}, { __gc = forever })
  end,
  ["/setmetatable-false"] = function()
    setmetatable({}, { __gc = false })
  end,
  ["/debug-setmetatable"] = function()
    debug.setmetatable({}, { __gc = forever })
  end,
  ["/io-metatable"] = function()
    -- A core or library metatable with a C finalizer: replace the finalizer, then make an
    -- object that gets it.
    getmetatable(io.stdout).__gc = forever
    io.open("/dev/null"):close()
  end,
  ["/io-metatable-rawset"] = function()
    rawset(getmetatable(io.stdout), "__gc", forever)
    io.open("/dev/null"):close()
  end,
  ["/debug-getmetatable"] = function()
    debug.getmetatable(io.stdout).__gc = forever
    io.open("/dev/null"):close()
  end,
  ["/req-metatable"] = function(req)
    getmetatable(req).__gc = forever
  end,
}

return {
  lua = { max_time = 0.5 },
  request = function(req, res)
    local attack = attacks[req.path]
    if attack then
      local ok, err = pcall(attack, req)
      collectgarbage()
      collectgarbage()
      res:send(200, ok and "not refused\n" or ("refused: " .. tostring(err) .. "\n"))
      return
    end
    if req.path == "/plain" then
      -- What apps still may do: metatables without __gc, reading a core metatable.
      local t = setmetatable({}, { __index = { x = 1 } })
      local close_ran = false
      do
        local c <close> = setmetatable({}, { __close = function() close_ran = true end })
      end
      local mt = getmetatable(io.stdout)
      res:send(200, ("x=%d close=%s name=%s strindex=%s\n"):format(t.x, tostring(close_ran),
        tostring(mt.__name), tostring(getmetatable("").__index == string)))
      return
    end
    res:send(200, "fine\n")
  end,
}
