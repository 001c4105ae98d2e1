-- The game's Lua side: accepts players' WebSockets on /game, subscribes them to the snapshot
-- topic, and turns text input ("move DX DY") into calls of the host's game.input (a C function
-- the host registered). Binary input is handled by the host in C before it reaches Lua.
local sy = require 'switchyard'

local app = {}

app.lua = { max_time = 2 } -- the host overrides it with --lua-max-time

function app.upgrade(req)
  if req.path ~= '/game' then return sy.ignore() end
  return sy.accept('websocket', {
    open = function(ws)
      ws:subscribe('game')
      ws:send('welcome ' .. ws.id)
    end,
    message = function(ws, msg)
      local dx, dy = msg:match('^move (%-?%d+) (%-?%d+)$')
      if dx then
        game.input(ws.id, tonumber(dx), tonumber(dy))
      elseif msg == 'spin' then
        while true do end -- a stuck handler: the time budget ends it, the tick goes on
      end
    end,
  })
end

-- Called by the host once a second (sy_server_call_lua).
function app.second(tick, players)
  app.last_report = string.format('tick %d, %d players', tick, players)
end

function app.request(req, res)
  res:send(200, 'switchyard game host\n')
end

return app
