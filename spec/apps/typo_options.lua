-- A misspelled app.options key.
return {
  options = { idle_timout = 30 },
  request = function(req, res) res:send(200, "fine\n") end,
}
