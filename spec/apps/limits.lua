-- spec/apps/limits.lua: app.http sets the server's HTTP limits (see limits_spec.lua).
return {
  http = { max_body = 10, max_head = 300, max_headers = 4, keepalive_timeout = 0.5,
           header_timeout = 0.5 },
  request = function(req, res) res:send(200, "ok " .. (req.body or "")) end,
}
