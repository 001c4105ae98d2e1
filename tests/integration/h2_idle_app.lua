-- tests/integration/h2_idle_app.lua: a short keep-alive timeout for the HTTP/2 idle test.
return {
  http = { keepalive_timeout = 1 },
  request = function(req, res) res:send(200, "ok\n") end,
}
