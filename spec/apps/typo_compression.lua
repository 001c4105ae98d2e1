-- A bad value in app.options.
return {
  options = { compression = "bogus" },
  request = function(req, res) res:send(200, "fine\n") end,
}
