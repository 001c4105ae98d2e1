-- tests/integration/h2ws_app.lua: the app behind test_h2_websocket.py and the browser test:
-- WebSockets and a raw protocol over HTTP/2 extended CONNECT (RFC 8441), and the same paths
-- over HTTP/1.1 for comparison.
local sy = require "switchyard"

local closes = {}   -- "path code" of the WebSocket closes seen, in order
local function info(req)
  local offer = req.upgrades and req.upgrades[1]
  return table.concat({
    "version=" .. req.version, "method=" .. req.method, "path=" .. req.path,
    "query=" .. tostring(req.query), "scheme=" .. req.scheme,
    "host=" .. tostring(req.headers.host),
    "offer=" .. tostring(offer and offer.name),
    "offers_ws=" .. tostring(req:offers("websocket") ~= nil),
    "protocol=" .. tostring(req.headers["sec-websocket-protocol"]),
    "x-a=" .. tostring(req.headers["x-a"]),
  }, "\n")
end

local echo = {
  message = function(ws, data, binary) ws:send(data, binary) end,
  close = function(ws, code) closes[#closes + 1] = ws.path .. " " .. tostring(code) end,
}

local page = [[<!doctype html><title>h2ws</title><script>
const ws = new WebSocket("wss://" + location.host + "/info");
ws.onmessage = (e) => { document.title = "got " + e.data.replace(/\n/g, " "); ws.close(); };
ws.onerror = () => { document.title = "error"; };
</script>]]

local app = { http = { high_water = 64 * 1024 } }

function app.request(req, res)
  if req.path == "/" then
    return res:send(200, page, { ["content-type"] = "text/html" })
  elseif req.path == "/closes" then
    return res:send(200, table.concat(closes, "\n"))
  end
  res:send(405, "request " .. req.method .. " " .. req.path .. " version=" .. req.version .. "\n")
end

function app.upgrade(req)
  local p = req.path
  if req:offers("websocket") then
    if p == "/echo" then
      local sub
      local offered = req.headers["sec-websocket-protocol"]
      if offered and offered:find("chat", 1, true) then sub = "chat" end
      return sy.accept("websocket", echo, { subprotocol = sub })
    elseif p == "/info" then
      local text = info(req)
      sy.log("info", "websocket over HTTP/" .. req.version .. " " .. req.method)
      return sy.accept("websocket", {
        open = function(ws) ws:send(text) end,
        message = echo.message, close = echo.close,
      })
    elseif p == "/deflate" then
      return sy.accept("websocket", echo, { compression = "shared" })
    elseif p == "/small" then
      return sy.accept("websocket", echo, { max_message_size = 1024 })
    elseif p == "/flood" then
      -- "N SIZE": sends N binary messages of SIZE bytes, then "done"; "drained" on drain.
      return sy.accept("websocket", {
        message = function(ws, data)
          local n, size = data:match("^(%d+) (%d+)$")
          local chunk = ("x"):rep(tonumber(size))
          local over = 0
          for _ = 1, tonumber(n) do
            if ws:send(chunk, true) == false then over = over + 1 end
          end
          ws.data.buffered = ws:buffered()
          ws:send("done " .. ws:buffered())
        end,
        drain = function(ws) ws:send("drained " .. ws:buffered()) end,
        close = echo.close,
      })
    elseif p == "/bye" then
      return sy.accept("websocket", {
        open = function(ws) ws:close(4000, "bye") end, close = echo.close,
      })
    elseif p == "/reject" then
      return sy.reject(403, "no websocket here\n", { ["x-why"] = "test" })
    elseif p == "/required" then
      return sy.upgrade_required("websocket", "upgrade required\n")
    elseif p == "/ignore" then
      return sy.ignore()
    elseif p == "/later" then
      sy.sleep(0.05)
      return sy.accept("websocket", echo)
    end
    return nil
  end
  if req:offers("h2c") then return sy.accept("h2c") end
  if req:offers("echo-raw") then
    return sy.accept("echo-raw", {
      data = function(conn, bytes) conn:write(bytes) end,
      eof = function(conn) conn:write("eof seen\n"); conn:shutdown() end,
    })
  end
end

return app
