-- A misspelled app.lua key.
return {
  lua = { max_memry = 64 * 1024 * 1024 },
  request = function(req, res) res:send(200, "fine\n") end,
}
