-- The app the embedding test's host loads: GREETING is a global the host sets from C.
local app = {}

function app.request(req, res)
  res:send(200, "hello " .. tostring(GREETING) .. " " .. req.path .. "\n",
           { ["content-type"] = "text/plain" })
end

return app
