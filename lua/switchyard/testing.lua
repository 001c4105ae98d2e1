-- switchyard.testing: runs an app's hooks and handlers in plain Lua (busted), no server.
--
--   local t = require "switchyard.testing"
--   local app = t.load("app.lua")                      -- or t.load({ request = ... })
--   local r = t.request(app, { method = "GET", path = "/" })
--   assert.equal(200, r.status)
--   local c = t.websocket(app, { path = "/chat" })     -- a fake client; open has run
--   c:send("hi"); assert.equal("hi", c:receive())
--   t.clock:advance(30)                                -- timers due, sleepers woken
--
-- While app code runs (loading the file, hooks, handlers, timers) package.loaded.switchyard
-- is the app's fake module (and opts.modules are installed likewise); the previous values
-- are put back after each run. Every hook, handler and timer callback runs in a coroutine of
-- its own, as in the server, so sy.sleep waits on the fake clock. Errors in app code are
-- answered as the server answers them (500, WebSocket close 1011, a raw connection closed)
-- and recorded in app.errors (each { where = "app.request", message = traceback }), and
-- logged in app.logs as level "error".
local M = {}

local unpack = table.unpack

-- The fake clock, shared by every app under test: t.clock:advance(seconds).
local Clock = {}
Clock.__index = Clock

local EPOCH = 1700000000

-- The fake connection behind each WebSocket handle (kept out of the handle, as the server
-- keeps its state out of its face).
local conn_of = setmetatable({}, { __mode = "k" })

local function new_clock()
  return setmetatable({ t = EPOCH, timers = {}, seq = 0 }, Clock)
end

-- Registers fn to run at now + seconds; returns the entry (entry.active, entry.interval).
function Clock:_schedule(seconds, fn, interval)
  self.seq = self.seq + 1
  local e = { due = self.t + seconds, fn = fn, interval = interval, active = true,
              seq = self.seq }
  self.timers[#self.timers + 1] = e
  return e
end

-- The earliest active timer due at or before limit (ties: the one scheduled first).
function Clock:_next(limit)
  local best, bi
  for i, e in ipairs(self.timers) do
    if e.active and e.due <= limit and (not best or e.due < best.due
        or (e.due == best.due and e.seq < best.seq)) then
      best, bi = e, i
    end
  end
  return best, bi
end

-- The deadline of the earliest active timer, or nil.
function Clock:next_deadline()
  local e = self:_next(math.huge)
  return e and e.due
end

function Clock:now()
  return self.t
end

-- Moves the clock forward by seconds (>= 0), running in order every timer and waking every
-- sleeper due on the way, including those they schedule within the interval.
function Clock:advance(seconds)
  assert(type(seconds) == "number" and seconds >= 0, "advance: seconds must be a number >= 0")
  local target = self.t + seconds
  local guard = 0
  while true do
    local e, i = self:_next(target)
    if not e then break end
    guard = guard + 1
    if guard > 1000000 then error("advance: more than a million timer runs", 2) end
    if e.due > self.t then self.t = e.due end
    if e.interval then
      e.due = e.due + math.max(e.interval, 1e-9)
    else
      e.active = false
      table.remove(self.timers, i)
    end
    e.fn()
  end
  self.t = target
  -- Drop cancelled entries.
  local keep = {}
  for _, e in ipairs(self.timers) do
    if e.active then keep[#keep + 1] = e end
  end
  self.timers = keep
end

M.clock = new_clock()

-- Forgets every timer and sleeper and sets the clock back to its start.
function M.reset()
  local c = new_clock()
  for k in pairs(M.clock) do M.clock[k] = nil end
  for k, v in pairs(c) do M.clock[k] = v end
end

-- Running app code ---------------------------------------------------------------------------

local SLEEP = {} -- what a sleeping coroutine yields
local kit_threads = setmetatable({}, { __mode = "k" })

-- Installs the app's modules in package.loaded for the duration of fn(...).
local function with_modules(app, fn, ...)
  local saved = {}
  for name, mod in pairs(app._modules) do
    saved[name] = { package.loaded[name] }
    package.loaded[name] = mod
  end
  local r = table.pack(pcall(fn, ...))
  for name, v in pairs(saved) do package.loaded[name] = v[1] end
  if not r[1] then error(r[2], 0) end
  return unpack(r, 2, r.n)
end

local function record_error(app, where, msg)
  app.errors[#app.errors + 1] = { where = where, message = msg }
  app.logs[#app.logs + 1] = { level = "error", message = where .. ": " .. msg }
end

-- Resumes co with args (modules installed); on a sleep, schedules its wake-up; when it ends,
-- calls done(true, results...) or done(false, traceback).
local function step(app, co, done, ...)
  local r = table.pack(with_modules(app, coroutine.resume, co, ...))
  if not r[1] then
    local msg = debug.traceback(co, tostring(r[2]))
    coroutine.close(co)
    return done(false, msg)
  end
  if coroutine.status(co) == "dead" then
    return done(true, unpack(r, 2, r.n))
  end
  if r[2] == SLEEP then
    M.clock:_schedule(r[3], function() step(app, co, done) end)
    return
  end
  local msg = debug.traceback(co, "attempt to yield from a hook (use sy.sleep to wait)")
  coroutine.close(co)
  return done(false, msg)
end

-- Runs fn(...) in a coroutine of its own; done(ok, ...) follows when it ends.
local function spawn(app, fn, done, ...)
  local co = coroutine.create(fn)
  kit_threads[co] = true
  step(app, co, done, ...)
end

-- Runs the clock until cond() holds, at most `limit` seconds ahead (0 first, so sleep(0) and
-- timers due now run). Returns cond().
local function await(cond, limit)
  if cond() then return true end
  M.clock:advance(0)
  local stop = M.clock.t + limit
  while not cond() do
    local d = M.clock:next_deadline()
    if not d or d > stop then return false end
    M.clock:advance(d - M.clock.t)
  end
  return true
end

-- The fake `switchyard` module ---------------------------------------------------------------

local LEVELS = { debug = true, info = true, warn = true, error = true }

local function copy(t)
  local c = {}
  for k, v in pairs(t) do c[k] = v end
  return c
end

local Decision = {
  __tostring = function(d)
    return ("switchyard.Decision(%s%s)"):format(d.kind,
      d.token and (" " .. d.token) or d.status and (" " .. d.status) or "")
  end,
}

local function check_status(status, lo, where)
  if math.type(status) ~= "integer" or status < lo or status > 599 then
    error(("%s: status must be an integer in %d..599, got %s"):format(where, lo,
          tostring(status)), 3)
  end
end

local function new_fake(app)
  local sy = { version = "0.1.0" }

  function sy.accept(token, handlers, options)
    if type(token) ~= "string" then
      error("sy.accept: token must be a string, got " .. type(token), 2)
    end
    if type(handlers) == "string" then
      local sets = app.hooks and app.hooks.handlers
      if type(sets) ~= "table" or type(sets[handlers]) ~= "table" then
        error(("sy.accept: no handler set '%s' in app.handlers"):format(handlers), 2)
      end
    elseif handlers ~= nil and type(handlers) ~= "table" then
      error("sy.accept: handlers must be a table or a handler set name", 2)
    end
    if options ~= nil and type(options) ~= "table" then
      error("sy.accept: options must be a table", 2)
    end
    return setmetatable({ kind = "accept", token = token, handlers = handlers or {},
                          options = options and copy(options) or {} }, Decision)
  end

  function sy.ignore()
    return setmetatable({ kind = "ignore" }, Decision)
  end

  function sy.upgrade_required(protocols, body)
    if type(protocols) ~= "string" then
      error("sy.upgrade_required: protocols must be a string", 2)
    end
    return setmetatable({ kind = "upgrade_required", status = 426, protocols = protocols,
                          body = body }, Decision)
  end

  function sy.reject(status, body, headers)
    check_status(status, 200, "sy.reject")
    return setmetatable({ kind = "reject", status = status, body = body,
                          headers = headers or {} }, Decision)
  end

  function sy.publish(topic, data, binary)
    return app:_publish(topic, data, binary, nil)
  end

  function sy.subscribers(topic)
    local n = 0
    for ws in pairs(app._topics[topic] or {}) do
      if conn_of[ws].open then n = n + 1 end
    end
    return n
  end

  -- sy.counter / sy.gauge: the same rules as the server's, values kept in this fake, read
  -- back with metric:value(labels?).
  local metrics = {}
  local function series_key(labels)
    if labels == nil then return "" end
    if type(labels) ~= "table" then error("metric labels must be a table", 3) end
    local names = {}
    for k, v in pairs(labels) do
      if type(k) ~= "string" or not k:match("^[%a_][%w_]*$") or k:sub(1, 2) == "__" then
        error("metric labels: '" .. tostring(k) .. "' is not a label name", 3)
      end
      if type(v) ~= "string" and type(v) ~= "number" then
        error("metric labels: values must be strings or numbers", 3)
      end
      names[#names + 1] = k
    end
    table.sort(names)
    for i, k in ipairs(names) do names[i] = k .. "=" .. string.format("%q", tostring(labels[k])) end
    return table.concat(names, ",")
  end
  local function declare(kind, name, help)
    local fn = "sy." .. kind
    if type(name) ~= "string" or not name:match("^[%a_:][%w_:]*$") or #name > 128 then
      error(fn .. "('" .. tostring(name) .. "'): a metric name must match [a-zA-Z_:][a-zA-Z0-9_:]*", 3)
    end
    if name:sub(1, 11) == "switchyard_" then
      error(fn .. "('" .. name .. "'): metric names starting with switchyard_ are the server's own", 3)
    end
    local m = metrics[name]
    if m and m.kind ~= kind then
      error(fn .. "('" .. name .. "'): a metric of that name exists with another type", 3)
    end
    m = m or { kind = kind, values = {} }
    m.help = help or ""
    metrics[name] = m
    local function change(n, labels, set)
      if type(n) ~= "number" or n ~= n or n == math.huge or n == -math.huge then
        error("metric: the value must be a finite number", 3)
      end
      local key = series_key(labels)
      m.values[key] = set and n or (m.values[key] or 0) + n
    end
    local obj = {}
    function obj:inc(n, labels)
      n = n == nil and 1 or n
      if kind == "counter" and type(n) == "number" and n < 0 then
        error("metric: a counter only goes up (inc with n >= 0)", 2)
      end
      change(n, labels)
    end
    obj.add = obj.inc
    function obj:dec(n, labels)
      if kind ~= "gauge" then error("metric: a counter only goes up (dec is for gauges)", 2) end
      change(-(n == nil and 1 or n), labels)
    end
    function obj:set(v, labels)
      if kind ~= "gauge" then error("metric: a counter only goes up (set is for gauges)", 2) end
      change(v, labels, true)
    end
    function obj:value(labels) return m.values[series_key(labels)] or 0 end
    return obj
  end
  function sy.counter(name, help) return declare("counter", name, help) end
  function sy.gauge(name, help) return declare("gauge", name, help) end

  local function timer(seconds, fn, every, name)
    if type(seconds) ~= "number" or seconds < 0 then
      error(name .. ": seconds must be a number >= 0", 3)
    end
    if type(fn) ~= "function" then error(name .. ": fn must be a function", 3) end
    local handle = {}
    local entry = M.clock:_schedule(seconds, function()
      spawn(app, fn, function(ok, err)
        if not ok then record_error(app, name, err) end
      end, handle)
    end, every and seconds or nil)
    function handle:cancel()
      local was = entry.active
      entry.active = false
      return was
    end
    function handle:active() return entry.active end
    return handle
  end
  function sy.after(seconds, fn) return timer(seconds, fn, false, "sy.after") end
  function sy.every(seconds, fn) return timer(seconds, fn, true, "sy.every") end

  function sy.now() return M.clock.t end

  function sy.sleep(seconds)
    if type(seconds) ~= "number" or seconds < 0 then
      error("sy.sleep: seconds must be a number >= 0", 2)
    end
    local co, main = coroutine.running()
    if main or not coroutine.isyieldable() then
      error("sy.sleep: cannot wait here (only inside a hook, handler or timer)", 2)
    end
    if not kit_threads[co] then
      error("sy.sleep: cannot wait inside a coroutine of the app's own "
            .. "(coroutine.yield to the hook instead)", 2)
    end
    coroutine.yield(SLEEP, seconds)
  end

  function sy.log(level, ...)
    if not LEVELS[level] then
      error("sy.log: level must be debug, info, warn or error, got " .. tostring(level), 2)
    end
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    app.logs[#app.logs + 1] = { level = level, message = table.concat(parts, " ", 1, parts.n) }
  end

  function sy.tcp()
    if app._tcp then return app._tcp() end
    error("sy.tcp is not available in switchyard.testing; pass a fake via "
          .. "t.load(app, {modules = {...}}) or t.load(app, {tcp = function() ... end})", 2)
  end

  return sy
end

-- Apps under test ----------------------------------------------------------------------------

local App = {}
App.__index = App

-- Loads an app from a file path or a table. opts.modules: { [name] = module } installed in
-- package.loaded while app code runs (opts.modules.switchyard replaces the fake); opts.tcp:
-- a function returning a fake socket for sy.tcp().
function M.load(path_or_table, opts)
  opts = opts or {}
  local app = setmetatable({ errors = {}, logs = {}, _topics = {}, _next_id = 0,
                             _tcp = opts.tcp }, App)
  app.sy = new_fake(app)
  app._modules = { switchyard = app.sy }
  for name, mod in pairs(opts.modules or {}) do app._modules[name] = mod end
  if type(path_or_table) == "table" then
    app.hooks = path_or_table
  elseif type(path_or_table) == "string" then
    local chunk, err = loadfile(path_or_table)
    if not chunk then error(err, 2) end
    local ok, hooks = with_modules(app, xpcall, chunk, debug.traceback)
    if not ok then error("loading " .. path_or_table .. ": " .. tostring(hooks), 2) end
    if type(hooks) ~= "table" then
      error(("%s returned %s, not a table of hooks"):format(path_or_table, type(hooks)), 2)
    end
    app.hooks = hooks
  else
    error("t.load: expected a file path or an app table", 2)
  end
  return app
end

-- The messages logged at a level (or all), as strings.
function App:logged(level)
  local out = {}
  for _, l in ipairs(self.logs) do
    if not level or l.level == level then out[#out + 1] = l.message end
  end
  return out
end

function App:_publish(topic, data, binary, except)
  local n = 0
  local subs = {}
  for ws in pairs(self._topics[topic] or {}) do
    if ws ~= except and conn_of[ws].open then subs[#subs + 1] = ws end
  end
  table.sort(subs, function(a, b) return conn_of[a].id < conn_of[b].id end)
  for _, ws in ipairs(subs) do
    conn_of[ws].inbox[#conn_of[ws].inbox + 1] = { data, binary and true or false }
    n = n + 1
  end
  return n
end

-- Requests -----------------------------------------------------------------------------------

local Request = {}

function Request.offers(req, token)
  if type(token) ~= "string" then error("req:offers: token must be a string", 2) end
  local name, version = token:match("^([^/]+)/(.+)$")
  name = (name or token):lower()
  for _, o in ipairs(req.upgrades or {}) do
    if o.name:lower() == name and (not version or o.version == version) then return o end
  end
  return nil
end

local function parse_offers(list)
  local out = {}
  for _, s in ipairs(list) do
    if type(s) == "table" then
      out[#out + 1] = s
    else
      local name, version = s:match("^%s*([^/%s]+)/?([^%s]*)%s*$")
      if name then out[#out + 1] = { name = name, version = version ~= "" and version or nil } end
    end
  end
  return out
end

-- Builds a req from spec: method (GET), path ("/", may carry "?query"), headers, body,
-- upgrades (a list of tokens, or taken from an Upgrade header), scheme, sni, remote_addr,
-- version ("1.1").
local function make_req(spec)
  spec = spec or {}
  local target = spec.target or spec.path or "/"
  local path, query = target:match("^([^?]*)%?(.*)$")
  local headers = {}
  for k, v in pairs(spec.headers or {}) do headers[k:lower()] = tostring(v) end
  local upgrades = spec.upgrades
  if not upgrades and headers.upgrade then
    upgrades = {}
    for tok in headers.upgrade:gmatch("[^,]+") do upgrades[#upgrades + 1] = tok end
  end
  if upgrades and #upgrades > 0 and not headers.upgrade then
    local names = {}
    for i, u in ipairs(upgrades) do
      names[i] = type(u) == "table" and (u.name .. (u.version and "/" .. u.version or "")) or u
    end
    headers.upgrade = table.concat(names, ", ")
    headers.connection = headers.connection or "Upgrade"
  end
  headers.host = headers.host or "localhost"
  local req = {
    method = spec.method or "GET",
    target = target,
    path = path or target,
    query = query or spec.query,
    version = spec.version or "1.1",
    scheme = spec.scheme or "http",
    sni = spec.sni,
    headers = headers,
    body = spec.body,
    remote_addr = spec.remote_addr or "127.0.0.1",
    upgrades = upgrades and parse_offers(upgrades) or nil,
    offers = Request.offers,
  }
  return req
end

local function new_res()
  local res = { sent = nil }
  function res:send(status, body, headers)
    check_status(status, 200, "res:send")
    if body ~= nil and type(body) ~= "string" then
      error("res:send: body must be a string", 2)
    end
    if headers ~= nil and type(headers) ~= "table" then
      error("res:send: headers must be a table", 2)
    end
    if self.sent then return nil, "closed" end
    local h = {}
    for k, v in pairs(headers or {}) do
      h[k:lower()] = type(v) == "table" and v or tostring(v)
    end
    self.sent = { status = status, headers = h, body = body or "" }
    return true
  end
  function res:upgrade_required(protocols, body)
    if type(protocols) ~= "string" then
      error("res:upgrade_required: protocols must be a string", 2)
    end
    return self:send(426, body, { upgrade = protocols, connection = "Upgrade" })
  end
  return res
end

local DEFAULT_WAIT = 3600

-- Whether the client offered what decision d accepts (the token, and a WebSocket subprotocol
-- among those it listed); else false and what is wrong, as the server's log says.
local function offered(req, d)
  if not req:offers(d.token) then
    return false, ("sy.accept: token %q was not offered by the client"):format(d.token)
  end
  local sub = d.options and d.options.subprotocol
  if sub ~= nil and d.token:lower() == "websocket" then
    for p in (req.headers["sec-websocket-protocol"] or ""):gmatch("[^,%s]+") do
      if p == sub then return true end
    end
    return false, ("sy.accept: subprotocol %q was not offered by the client")
                  :format(tostring(sub))
  end
  return true
end

-- Runs app.upgrade(req) in a coroutine; awaits its decision up to opts.wait (fake) seconds.
-- Returns the decision (nil: ignore) or nil, "no decision"; an error is recorded and gives a
-- decision { kind = "error", status = 500 }.
local function run_upgrade(app, req, wait)
  local fn = app.hooks.upgrade
  if type(fn) ~= "function" then return { kind = "ignore" } end
  local result
  spawn(app, fn, function(ok, d)
    if not ok then
      record_error(app, "app.upgrade", d)
      result = { kind = "error", status = 500, body = "internal server error\n" }
    elseif d == nil then
      result = { kind = "ignore" }
    elseif type(d) ~= "table" or getmetatable(d) ~= Decision then
      local msg = "app.upgrade returned a " .. type(d) .. "; expected a decision or nil"
      record_error(app, "app.upgrade", msg)
      result = { kind = "error", status = 500, body = "internal server error\n" }
    elseif d.kind == "accept" and not offered(req, d) then
      record_error(app, "app.upgrade", select(2, offered(req, d)))
      result = { kind = "error", status = 500, body = "internal server error\n" }
    else
      result = d
    end
  end, req)
  if not await(function() return result ~= nil end, wait or DEFAULT_WAIT) then
    return nil, "no decision"
  end
  return result
end

-- t.upgrade(app, spec) -> the decision of app.upgrade as a plain table: kind ("accept",
-- "ignore", "upgrade_required", "reject"; "error" when the hook raised: see app.errors),
-- token, status, body, headers, protocols, options, handlers. spec.upgrades defaults to
-- { "websocket" }.
function M.upgrade(app, spec)
  spec = copy(spec or {})
  if not spec.upgrades and not (spec.headers and (spec.headers.upgrade or spec.headers.Upgrade)) then
    spec.upgrades = { "websocket" }
  end
  local req = make_req(spec)
  local d, err = run_upgrade(app, req, spec.wait)
  if not d then return nil, err end
  return copy(d), req
end

-- t.request(app, spec) -> { status, headers, body }, or nil, "no response" when none came
-- within spec.wait fake seconds (default 3600; the clock is advanced to get there). A request
-- with spec.upgrades goes to app.upgrade first, as in the server: ignored, it goes on to
-- app.request; rejected or 426, that answer; accepted, { status = 101, decision = d }.
function M.request(app, spec)
  spec = spec or {}
  local req = make_req(spec)
  local wait = spec.wait or DEFAULT_WAIT
  if req.upgrades and #req.upgrades > 0 then
    local d, err = run_upgrade(app, req, wait)
    if not d then return nil, err end
    if d.kind == "accept" then
      return { status = 101, headers = { upgrade = d.token, connection = "Upgrade" },
               body = "", decision = copy(d) }
    elseif d.kind == "reject" or d.kind == "error" then
      local h = {}
      for k, v in pairs(d.headers or {}) do h[k:lower()] = v end
      return { status = d.status, headers = h, body = d.body or "" }
    elseif d.kind == "upgrade_required" then
      return { status = 426, headers = { upgrade = d.protocols, connection = "Upgrade" },
               body = d.body or "" }
    end
  end
  local fn = app.hooks.request
  if type(fn) ~= "function" then
    return { status = 404, headers = {}, body = "not found\n" }
  end
  local res = new_res()
  spawn(app, fn, function(ok, err)
    if not ok then
      record_error(app, "app.request", err)
      if not res.sent then
        res.sent = { status = 500, headers = {}, body = "internal server error\n" }
      end
    end
  end, req, res)
  if not await(function() return res.sent ~= nil end, wait) then
    return nil, "no response"
  end
  return res.sent
end

-- Connections (WebSocket and raw) ------------------------------------------------------------

-- The handlers of a connection: its table, or the set it names in the app's handlers now.
local function handler_set(conn)
  if type(conn.handlers) ~= "string" then return conn.handlers end
  local sets = conn.app.hooks.handlers
  return type(sets) == "table" and type(sets[conn.handlers]) == "table" and sets[conn.handlers]
         or {}
end

-- A connection's events run one at a time, in order; a handler that sleeps holds the rest.
local function pump(conn)
  while not conn.busy and #conn.queue > 0 do
    local ev = table.remove(conn.queue, 1)
    local fn = handler_set(conn)[ev.name]
    if (ev.always or conn.open) and type(fn) == "function" then
      conn.busy = true
      local inside, finished = true, false
      spawn(conn.app, fn, function(ok, err)
        finished = true
        conn.busy = false
        if not ok then
          record_error(conn.app, conn.kind .. " " .. ev.name, err)
          conn:_fail()
        end
        if ev.after then ev.after() end
        if not inside then pump(conn) end
      end, conn.handle, unpack(ev.args, 1, ev.args.n))
      inside = false
      if not finished then return end
    elseif ev.after then
      ev.after()
    end
  end
end

local function push(conn, name, args, opts)
  local ev = { name = name, args = table.pack(unpack(args)), always = opts and opts.always,
               after = opts and opts.after }
  ev.args.n = #args
  conn.queue[#conn.queue + 1] = ev
  pump(conn)
end

-- A read-only handle for the app: methods, then built-in fields, then the app's own fields.
-- A WebSocket's, as the server's, is a table whose own field is send (the one built-in name
-- the app may assign; nil brings back the method).
local function make_handle(kind, methods, fixed)
  local own = {}
  local handle = {}
  if kind == "ws" then handle.send = methods.send end
  return setmetatable(handle, {
    __index = function(_, k)
      local m = methods[k]
      if m ~= nil then return m end
      local f = fixed[k]
      if f ~= nil then return f end
      return own[k]
    end,
    __newindex = function(t, k, v)
      if kind == "ws" and k == "send" then
        rawset(t, k, v)
        return
      end
      if methods[k] ~= nil or fixed[k] ~= nil or k == "subprotocol" then
        error(("%s.%s is read-only"):format(kind, k), 2)
      end
      own[k] = v
    end,
    __tostring = function() return ("switchyard.%s(%d)"):format(
      kind == "ws" and "WebSocket" or "Conn", fixed.id) end,
  })
end

local function is_utf8(s)
  return utf8.len(s) ~= nil
end

local Client = {}
Client.__index = Client

-- The next message the server sent: data, binary; nil when there is none.
function Client:receive()
  local m = table.remove(self._conn.inbox, 1)
  if not m then return nil end
  return m[1], m[2]
end

-- All messages the server sent and not yet received, as a list of strings.
function Client:receive_all()
  local out = {}
  while true do
    local d = self:receive()
    if d == nil then return out end
    out[#out + 1] = d
  end
end

-- t.websocket(app, spec) -> a fake WebSocket client. app.upgrade must accept "websocket";
-- open has run (or is waiting) when it returns.
function M.websocket(app, spec)
  spec = copy(spec or {})
  spec.upgrades = spec.upgrades or { "websocket" }
  spec.headers = copy(spec.headers or {})
  local h = spec.headers
  h["sec-websocket-key"] = h["sec-websocket-key"] or "dGhlIHNhbXBsZSBub25jZQ=="
  h["sec-websocket-version"] = h["sec-websocket-version"] or "13"
  local req = make_req(spec)
  local d, err = run_upgrade(app, req, spec.wait)
  if not d then error("t.websocket: " .. err, 2) end
  if d.kind ~= "accept" or d.token:lower() ~= "websocket" then
    error(("t.websocket: app.upgrade did not accept websocket (%s%s)"):format(d.kind,
          d.token and (" " .. d.token) or d.status and (" " .. d.status) or ""), 2)
  end
  local opts = d.options or {}
  app._next_id = app._next_id + 1
  local conn = { app = app, kind = "ws", id = app._next_id, open = true, queue = {},
                 inbox = {}, pings = {}, handlers = d.handlers, topics = {} }
  local client = setmetatable({ _conn = conn, decision = copy(d) }, Client)
  local methods = {}
  local ws

  -- Ends the connection once: the client sees code, the close handler runs with peer_code.
  local function finish(code, reason, peer_code, peer_reason)
    if not conn.open then return end
    conn.open = false
    client.close_code, client.close_reason = code, reason or ""
    for topic in pairs(conn.topics) do
      local set = app._topics[topic]
      if set then set[ws] = nil end
    end
    push(conn, "close", { peer_code, peer_reason or "" }, { always = true })
  end
  function conn:_fail() finish(1011, "internal error", 1011, "internal error") end

  function methods:send(data, binary)
    if type(data) == "number" then data = tostring(data) end
    if type(data) ~= "string" then error("ws:send: data must be a string", 2) end
    if not conn.open then return nil, "closed" end
    if not binary and not is_utf8(data) then
      error("ws:send: text must be valid UTF-8 (send it as binary)", 2)
    end
    conn.inbox[#conn.inbox + 1] = { data, binary and true or false }
    return true
  end
  function methods:ping(data)
    if data ~= nil and (type(data) ~= "string" or #data > 125) then
      error("ws:ping: data must be a string of at most 125 bytes", 2)
    end
    if not conn.open then return nil, "closed" end
    conn.pings[#conn.pings + 1] = data or ""
    return true
  end
  function methods:close(code, reason)
    code = code or 1000
    if math.type(code) ~= "integer" or not (code == 1000 or code == 1001
        or (code >= 3000 and code <= 4999)) then
      error("ws:close: code must be 1000, 1001 or 3000..4999", 2)
    end
    if reason ~= nil and (type(reason) ~= "string" or #reason > 123) then
      error("ws:close: reason must be a string of at most 123 bytes", 2)
    end
    if not conn.open then return nil, "closed" end
    -- The fake client answers the close at once with the same code.
    finish(code, reason, code, reason)
    return true
  end
  function methods:subscribe(topic)
    if type(topic) ~= "string" then error("ws:subscribe: topic must be a string", 2) end
    if not conn.open then return nil, "closed" end
    app._topics[topic] = app._topics[topic] or {}
    app._topics[topic][ws] = true
    conn.topics[topic] = true
    return true
  end
  function methods:unsubscribe(topic)
    if type(topic) ~= "string" then error("ws:unsubscribe: topic must be a string", 2) end
    local set = app._topics[topic]
    local was = set and set[ws] or false
    if set then set[ws] = nil end
    conn.topics[topic] = nil
    return was
  end
  function methods:publish(topic, data, binary)
    if type(topic) ~= "string" or type(data) ~= "string" then
      error("ws:publish: topic and data must be strings", 2)
    end
    return app:_publish(topic, data, binary, ws)
  end
  function methods:buffered() return 0 end

  ws = make_handle("ws", methods, {
    id = conn.id, path = req.path, subprotocol = opts.subprotocol,
    remote_addr = req.remote_addr, data = opts.data or {},
  })
  conn_of[ws] = conn -- for sy.publish and sy.subscribers
  conn.handle = ws
  client.ws = ws

  function client:send(data, binary)
    if type(data) ~= "string" then error("c:send: data must be a string", 2) end
    if not conn.open then return nil, "closed" end
    if not binary and not is_utf8(data) then
      finish(1007, "invalid UTF-8", 1007, "invalid UTF-8")
      return true
    end
    local max = opts.max_message_size or (app.hooks.options or {}).max_message_size
                or 1024 * 1024
    if #data > max then
      finish(1009, "message too big", 1009, "message too big")
      return true
    end
    push(conn, "message", { data, binary and true or false })
    return true
  end
  function client:ping(data)
    if not conn.open then return nil, "closed" end
    push(conn, "ping", { data or "" })
    return true
  end
  -- The client starts the closing handshake; the server echoes the code (1005 when none).
  function client:close(code, reason)
    if not conn.open then return nil, "closed" end
    finish(code or 1005, reason, code or 1005, reason)
    return true
  end
  function client:pings() return conn.pings end
  function client:is_open() return conn.open end

  push(conn, "open", {})
  return client
end

-- t.raw(app, spec) -> a fake client for a raw protocol. spec.upgrades names the offered
-- token(s); app.upgrade must accept one that is not websocket or h2c.
function M.raw(app, spec)
  spec = copy(spec or {})
  assert(spec.upgrades, "t.raw: spec.upgrades must list the offered token(s)")
  local req = make_req(spec)
  local d, err = run_upgrade(app, req, spec.wait)
  if not d then error("t.raw: " .. err, 2) end
  if d.kind ~= "accept" or d.token:lower() == "websocket" or d.token:lower() == "h2c" then
    error(("t.raw: app.upgrade did not accept a raw protocol (%s%s)"):format(d.kind,
          d.token and (" " .. d.token) or d.status and (" " .. d.status) or ""), 2)
  end
  local opts = d.options or {}
  app._next_id = app._next_id + 1
  local conn = { app = app, kind = "conn", id = app._next_id, open = true, queue = {},
                 inbox = {}, handlers = d.handlers, out = {} }
  local client = setmetatable({ _conn = conn, decision = copy(d) }, Client)
  local methods = {}

  local function finish()
    if not conn.open then return end
    conn.open = false
    client.closed = true
    push(conn, "close", {}, { always = true })
  end
  function conn:_fail() finish() end

  function methods:write(bytes)
    if type(bytes) ~= "string" then error("conn:write: bytes must be a string", 2) end
    if not conn.open or conn.shut then return nil, "closed" end
    conn.out[#conn.out + 1] = bytes
    return true
  end
  function methods:close()
    finish()
    return true
  end
  function methods:shutdown()
    if not conn.open or conn.shut then return nil, "closed" end
    conn.shut = true
    client.eof = true
    if conn.peer_eof then finish() end
    return true
  end
  function methods:buffered() return 0 end

  local handle = make_handle("conn", methods, {
    id = conn.id, path = req.path, remote_addr = req.remote_addr, data = opts.data or {},
  })
  conn.handle = handle
  client.conn = handle

  -- The bytes the server wrote since the last call, or nil when none.
  function client:receive()
    if #conn.out == 0 then return nil end
    local s = table.concat(conn.out)
    conn.out = {}
    return s
  end
  function client:send(bytes)
    if type(bytes) ~= "string" then error("c:send: bytes must be a string", 2) end
    if not conn.open or conn.peer_eof then return nil, "closed" end
    push(conn, "data", { bytes })
    return true
  end
  -- The client shuts its sending side: eof(conn), or a close without an eof handler.
  function client:shutdown()
    if not conn.open or conn.peer_eof then return nil, "closed" end
    conn.peer_eof = true
    if type(handler_set(conn).eof) == "function" then
      push(conn, "eof", {}, { after = function() if conn.shut then finish() end end })
    else
      finish()
    end
    return true
  end
  function client:close()
    if not conn.open then return nil, "closed" end
    finish()
    return true
  end
  function client:is_open() return conn.open end

  push(conn, "open", {})
  local early = spec.data
  if early then client:send(early) end
  return client
end

return M
