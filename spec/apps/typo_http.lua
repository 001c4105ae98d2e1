-- A misspelled app.http key.
return {
  http = { max_bdy = 4096 },
  request = function(req, res) res:send(200, "fine\n") end,
}
