-- switchyard.json: JSON through Debian's lua-cjson, with safe defaults.
--
--   local json = require "switchyard.json"
--   local body = json.encode({ ok = true, items = { 1, 2 } })   -- or nil, err
--   local t, err = json.decode(req.body)                        -- nil, err on bad input
--   if t and t.name == json.null then ... end
--
-- A private cjson instance (cjson.safe.new()), so other code using cjson keeps its settings:
-- - encode and decode return nil, err instead of raising;
-- - nesting deeper than json.MAX_DEPTH (64) is an error both ways;
-- - NaN and infinities do not encode (an error), and "NaN", "Infinity" and hex numbers do not
--   decode: strict RFC 8259;
-- - an empty table encodes as {} (cjson cannot tell an empty array from an empty object);
--   arrays that are mostly holes are an error (cjson's default).
local ok, cjson = pcall(require, "cjson.safe")
if not ok then
  error("switchyard.json needs lua-cjson (Debian package lua-cjson): " .. tostring(cjson), 0)
end

local M = {}

M.MAX_DEPTH = 64

local codec = cjson.new()
codec.encode_max_depth(M.MAX_DEPTH)
codec.decode_max_depth(M.MAX_DEPTH)
codec.encode_invalid_numbers(false)
codec.decode_invalid_numbers(false)

--- The JSON null, as decoded and as encoded (a light userdata, cjson.null).
M.null = codec.null

--- Encodes a Lua value as JSON text; returns the string, or nil, err.
function M.encode(value)
  local s, err = codec.encode(value)
  if s == nil then return nil, err end
  return s
end

--- Decodes JSON text; returns the value, or nil, err (also for a non-string argument).
function M.decode(text)
  if type(text) ~= "string" then return nil, "json.decode: string expected, got " .. type(text) end
  local v, err = codec.decode(text)
  if v == nil and err ~= nil then return nil, err end
  return v
end

return M
