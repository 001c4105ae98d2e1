-- switchyard.router: method + path routing for app.request and app.upgrade.
--
--   local router = require "switchyard.router"
--   local r = router.new()
--   r:get("/rooms/:id", function(req, res, params) res:send(200, params.id) end)
--   r:upgrade("/ws/:room", "websocket", function(req, params)
--     return sy.accept("websocket", handlers, { data = { room = params.room } })
--   end)
--   app.request = r:request_handler()
--   app.upgrade = r:upgrade_handler()
--
-- Patterns: "/" then segments separated by "/". A segment is static text, a capture ":name"
-- (one whole segment, at least one byte) or, last only, a splat "*name" (the rest of the path,
-- slashes included, possibly empty). Captures are percent-decoded ("%2F" gives "/"; "+" stays).
--
-- Matching rules:
-- - Static segments beat captures, and captures beat a splat, whatever the registration
--   order: "/rooms/new" wins over "/rooms/:id" for /rooms/new.
-- - Trailing slashes are significant: "/rooms" does not match /rooms/ and "/rooms/" does not
--   match /rooms. Empty segments ("//") never match a capture.
-- - HEAD uses the GET route when the path has no HEAD route (the server sends no body).
-- - OPTIONS on a known path without an OPTIONS route: 204 with Allow.
-- - A known path with another method: 405 with Allow (the path's methods, sorted, HEAD added
--   when GET is there). An unknown path: 404, or opts.not_found(req, res).
-- - A plain request for a path that only has upgrade routes: 426 naming their tokens.
-- - Upgrade routes of a path are tried in registration order; the first whose token the client
--   offers (req:offers(token)) gets the call. No route for the path: nil (sy.ignore semantics:
--   the request goes on to app.request), or opts.upgrade_fallback(req). A path with upgrade
--   routes none of whose tokens is offered: 426 naming them (sy.upgrade_required).
-- A bad pattern or a second route for the same method and pattern shape raises where it is
-- registered, naming the pattern.
local M = {}

local Router = {}
Router.__index = Router

local function decode(s)
  return (s:gsub("%%(%x%x)", function(h) return string.char(tonumber(h, 16)) end))
end

local function new_node()
  return { static = {}, param = nil, splat = nil, methods = nil, upgrades = nil }
end

-- Compiles a pattern into a list of { kind = "static"|"param"|"splat", text|name }.
local function compile(pattern)
  if type(pattern) ~= "string" then
    error("route pattern must be a string, got " .. type(pattern), 3)
  end
  if pattern:sub(1, 1) ~= "/" then
    error(("bad route pattern %q: must start with '/'"):format(pattern), 3)
  end
  local segs, names = {}, {}
  local body = pattern:sub(2)
  local parts = {}
  for part in (body .. "/"):gmatch("([^/]*)/") do parts[#parts + 1] = part end
  for i, part in ipairs(parts) do
    local last = i == #parts
    local first = part:sub(1, 1)
    if first == ":" or first == "*" then
      local name = part:sub(2)
      if not name:match("^[%a_][%w_]*$") then
        error(("bad route pattern %q: capture name %q must be a Lua identifier")
              :format(pattern, name), 3)
      end
      if names[name] then
        error(("bad route pattern %q: capture %q appears twice"):format(pattern, name), 3)
      end
      names[name] = true
      if first == "*" and not last then
        error(("bad route pattern %q: the splat *%s must be the last segment")
              :format(pattern, name), 3)
      end
      segs[#segs + 1] = { kind = first == ":" and "param" or "splat", name = name }
    elseif part == "" and not last then
      error(("bad route pattern %q: empty segment"):format(pattern), 3)
    else
      if part:find("[:*]") then
        error(("bad route pattern %q: ':' or '*' inside segment %q"):format(pattern, part), 3)
      end
      if part:find("[%s%c%%?#]") then
        error(("bad route pattern %q: segment %q holds a space, control byte, '%%', '?' or '#'")
              :format(pattern, part), 3)
      end
      segs[#segs + 1] = { kind = "static", text = part }
    end
  end
  return segs
end

-- The node of segs, created on the way; returns node and the capture names in order.
local function insert(root, segs)
  local node, names = root, {}
  for _, s in ipairs(segs) do
    if s.kind == "static" then
      local child = node.static[s.text]
      if not child then
        child = new_node()
        node.static[s.text] = child
      end
      node = child
    elseif s.kind == "param" then
      node.param = node.param or new_node()
      node = node.param
      names[#names + 1] = s.name
    else
      node.splat = node.splat or new_node()
      node = node.splat
      names[#names + 1] = s.name
    end
  end
  return node, names
end

-- Walks the trie from node over parts[i..]; returns the terminal node whose `want` field is set,
-- and fills vals with raw capture values. Static first, then capture, then splat (backtracking).
local function walk(node, parts, i, vals, want)
  if i > #parts then return node[want] and node or nil end
  local seg = parts[i]
  local child = node.static[decode(seg)]
  if child then
    local found = walk(child, parts, i + 1, vals, want)
    if found then return found end
  end
  if node.param and seg ~= "" then
    local n = #vals
    vals[n + 1] = seg
    local found = walk(node.param, parts, i + 1, vals, want)
    if found then return found end
    vals[n + 1] = nil
  end
  if node.splat and node.splat[want] then
    vals[#vals + 1] = table.concat(parts, "/", i)
    return node.splat
  end
  return nil
end

local function split(path)
  local parts = {}
  for part in (path:sub(2) .. "/"):gmatch("([^/]*)/") do parts[#parts + 1] = part end
  return parts
end

-- Finds the node for path holding `want` ("methods" or "upgrades"); nil when none.
local function lookup(root, path, want)
  if type(path) ~= "string" or path:sub(1, 1) ~= "/" then return nil end
  local parts = split(path)
  local vals = {}
  local node = walk(root, parts, 1, vals, want)
  if not node then return nil end
  return node, vals
end

local function params_of(names, vals)
  local p = {}
  for i, name in ipairs(names) do p[name] = decode(vals[i] or "") end
  return p
end

local METHOD = "^[!#$%%&'*+%-.^_`|~%w]+$"

--- Adds a route: method is a string ("GET") or a list of them; fn(req, res, params).
function Router:route(methods, pattern, fn)
  if type(methods) == "string" then methods = { methods } end
  if type(methods) ~= "table" or #methods == 0 then
    error("route methods must be a string or a non-empty list", 2)
  end
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error(("route %q: handler must be a function"):format(tostring(pattern)), 2)
  end
  local segs = compile(pattern)
  local node, names = insert(self._http, segs)
  node.methods = node.methods or {}
  for _, m in ipairs(methods) do
    if type(m) ~= "string" or not m:match(METHOD) then
      error(("route %q: bad method %q"):format(pattern, tostring(m)), 2)
    end
    m = m:upper()
    local old = node.methods[m]
    if old then
      error(("duplicate route %s %s (already registered as %s %s)")
            :format(m, pattern, m, old.pattern), 2)
    end
    node.methods[m] = { fn = fn, names = names, pattern = pattern }
  end
  return self
end

for _, m in ipairs({ "get", "post", "put", "delete", "patch", "head", "options" }) do
  local upper = m:upper()
  Router[m] = function(self, pattern, fn)
    if getmetatable(self) ~= Router then error("use r:" .. m .. "(pattern, fn)", 2) end
    return self:route(upper, pattern, fn)
  end
end

--- Adds an upgrade route: fn(req, params) returns a decision (sy.accept, ...) or nil.
function Router:upgrade(pattern, token, fn)
  if type(token) ~= "string" or token == "" or token:find("[%s,]") then
    error(("upgrade route %q: token must be a non-empty string without spaces or commas")
          :format(tostring(pattern)), 2)
  end
  if type(fn) ~= "function" and not (getmetatable(fn) or {}).__call then
    error(("upgrade route %q: handler must be a function"):format(tostring(pattern)), 2)
  end
  local segs = compile(pattern)
  local node, names = insert(self._up, segs)
  node.upgrades = node.upgrades or {}
  for _, u in ipairs(node.upgrades) do
    if u.token:lower() == token:lower() then
      error(("duplicate upgrade route %s %s (already registered as %s)")
            :format(token, pattern, u.pattern), 2)
    end
  end
  node.upgrades[#node.upgrades + 1] = { token = token, fn = fn, names = names, pattern = pattern }
  return self
end

local function allow_of(methods, auto_options)
  local list, seen = {}, {}
  for m in pairs(methods) do
    list[#list + 1] = m
    seen[m] = true
  end
  if seen.GET and not seen.HEAD then list[#list + 1] = "HEAD" end
  if auto_options and not seen.OPTIONS then list[#list + 1] = "OPTIONS" end
  table.sort(list)
  return table.concat(list, ", ")
end

local function tokens_of(upgrades)
  local t = {}
  for _, u in ipairs(upgrades) do t[#t + 1] = u.token end
  return table.concat(t, ", ")
end

local TEXT = { ["content-type"] = "text/plain; charset=utf-8" }

--- Finds the route for method and path: returns fn, params, or nil, status (404 or 405), allow.
function Router:match(method, path)
  local node, vals = lookup(self._http, path, "methods")
  if not node then return nil, 404 end
  local route = node.methods[method] or (method == "HEAD" and node.methods.GET)
  if not route then return nil, 405, allow_of(node.methods, true) end
  return route.fn, params_of(route.names, vals)
end

--- Answers one request: the route's return value, or the router's own 404/405/426/204.
function Router:handle(req, res)
  local fn, params_or_status, allow = self:match(req.method, req.path)
  if fn then return fn(req, res, params_or_status) end
  if params_or_status == 405 then
    if req.method == "OPTIONS" then return res:send(204, nil, { allow = allow }) end
    return res:send(405, "method not allowed\n",
                    { allow = allow, ["content-type"] = TEXT["content-type"] })
  end
  local up = lookup(self._up, req.path, "upgrades")
  if up then
    return res:upgrade_required(tokens_of(up.upgrades),
                                "this resource needs an upgrade to " .. tokens_of(up.upgrades) .. "\n")
  end
  if self._opts.not_found then return self._opts.not_found(req, res) end
  return res:send(404, "not found\n", TEXT)
end

--- Decides one upgrade request: the route's decision, nil, or a 426 decision.
function Router:handle_upgrade(req)
  local node, vals = lookup(self._up, req.path, "upgrades")
  if not node then
    if self._opts.upgrade_fallback then return self._opts.upgrade_fallback(req) end
    return nil
  end
  for _, u in ipairs(node.upgrades) do
    if req:offers(u.token) then return u.fn(req, params_of(u.names, vals)) end
  end
  return require("switchyard").upgrade_required(tokens_of(node.upgrades))
end

--- A function for app.request.
function Router:request_handler()
  return function(req, res) return self:handle(req, res) end
end

--- A function for app.upgrade.
function Router:upgrade_handler()
  return function(req) return self:handle_upgrade(req) end
end

--- router.new(opts): opts.not_found(req, res) replaces the 404; opts.upgrade_fallback(req)
--- decides upgrade offers for paths without upgrade routes (default: nil, i.e. ignore).
function M.new(opts)
  opts = opts or {}
  if type(opts) ~= "table" then error("router.new: opts must be a table", 2) end
  for k, v in pairs(opts) do
    if k ~= "not_found" and k ~= "upgrade_fallback" then
      error(("router.new: unknown option %q (known: not_found, upgrade_fallback)")
            :format(tostring(k)), 2)
    end
    if type(v) ~= "function" then error(("router.new: %s must be a function"):format(k), 2) end
  end
  return setmetatable({ _http = new_node(), _up = new_node(), _opts = opts }, Router)
end

M.decode = decode

return M
