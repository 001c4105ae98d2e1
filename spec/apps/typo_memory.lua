-- spec/apps/typo_memory.lua: accept_memory.lua with a misspelled handler: every accept fails,
-- at the memory cap too, and the failure must still be answered and logged.
local here = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local app = dofile(here .. "accept_memory.lua")
app._handlers.dta = function() end -- a typo
return app
