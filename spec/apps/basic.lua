-- spec/apps/basic.lua: fixture for spec/integration/http1_spec.lua and lua_api_spec.lua.
-- Plain HTTP only (no app.upgrade). Routes:
--   /            200 "hello\n" text/plain
--   /fast        200 "fast"
--   /req         req fields as key=value lines
--   /body        echoes req.body ("" when nil), x-body-type: type(req.body)
--   /len         "len=<#req.body>"
--   /error       raises "boom-request"
--   /later?ms=N  answers "later" from a timer after N ms
--   /status?code=N  status N, no body
--   /headers     custom response headers
--   /timers      sy.after ordering, :cancel(), sy.every
--   /now         two sy.now() readings 100 ms apart
--   /log         sy.log("info", "log-marker", 42)
--   /need-tls    res:upgrade_required("TLS/1.3", "need tls\n")
--   /big?n=N     N bytes of "x"
--   /stats       counters
local sy = require "switchyard"

local app = {}
local stats = { requests = 0, late_sends = 0, late_errors = 0 }

local function qparam(req, name)
  if not req.query then return nil end
  for k, v in req.query:gmatch("([^&=]+)=([^&]*)") do
    if k == name then return v end
  end
  return nil
end

local function show(v)
  if v == nil then return "<nil>" end
  return tostring(v)
end

local function dump(req)
  local out = {}
  local function add(k, v) out[#out + 1] = k .. "=" .. show(v) end
  add("method", req.method)
  add("target", req.target)
  add("path", req.path)
  add("query", req.query)
  add("query_type", type(req.query))
  add("version", req.version)
  add("scheme", req.scheme)
  add("remote_addr", req.remote_addr)
  add("body", req.body)
  add("body_type", type(req.body))
  add("upgrades_type", type(req.upgrades))
  add("headers_type", type(req.headers))
  local names = {}
  for k in pairs(req.headers or {}) do names[#names + 1] = k end
  table.sort(names)
  for _, k in ipairs(names) do add("h." .. k, req.headers[k]) end
  return table.concat(out, "\n") .. "\n"
end

function app.request(req, res)
  stats.requests = stats.requests + 1
  local p = req.path
  if p == "/" then
    res:send(200, "hello\n", { ["content-type"] = "text/plain" })
  elseif p == "/fast" then
    res:send(200, "fast")
  elseif p == "/req" then
    res:send(200, dump(req), { ["content-type"] = "text/plain" })
  elseif p == "/body" then
    res:send(200, req.body or "", { ["x-body-type"] = type(req.body) })
  elseif p == "/len" then
    res:send(200, "len=" .. (req.body and #req.body or "nil"))
  elseif p == "/error" then
    error("boom-request")
  elseif p == "/error-later" then
    -- keeps res in a timer, then raises: the core answers 500 and the kept res must go dead
    sy.after(0.15, function()
      local ok, why = res:send(200, "too late")
      stats.kept_after_error = tostring(ok) .. "," .. tostring(why)
    end)
    error("boom-request")
  elseif p == "/later" then
    local ms = tonumber(qparam(req, "ms")) or 100
    sy.after(ms / 1000, function()
      stats.late_sends = stats.late_sends + 1
      local ok = pcall(res.send, res, 200, "later")
      if not ok then stats.late_errors = stats.late_errors + 1 end
    end)
  elseif p == "/status" then
    res:send(tonumber(qparam(req, "code")) or 200)
  elseif p == "/headers" then
    res:send(200, "h", { ["x-custom"] = "yes", ["content-type"] = "text/x-test" })
  elseif p == "/timers" then
    local order, n = {}, 0
    sy.after(0.10, function() order[#order + 1] = "b" end)
    sy.after(0.05, function() order[#order + 1] = "a" end)
    local cancelled = sy.after(0.07, function() order[#order + 1] = "cancelled" end)
    cancelled:cancel()
    local every
    every = sy.every(0.02, function()
      n = n + 1
      if n == 3 then every:cancel() end
    end)
    sy.after(0.40, function()
      res:send(200, "order=" .. table.concat(order, ",") .. "\nevery=" .. n .. "\n")
    end)
  elseif p == "/now" then
    local t0 = sy.now()
    sy.after(0.1, function()
      local t1 = sy.now()
      res:send(200, ("t0=%.6f\nt1=%.6f\ntype=%s\n"):format(t0, t1, math.type(t0)))
    end)
  elseif p == "/log" then
    sy.log("info", "log-marker", 42)
    res:send(200, "logged")
  elseif p == "/need-tls" then
    res:upgrade_required("TLS/1.3", "need tls\n")
  elseif p == "/big" then
    res:send(200, string.rep("x", tonumber(qparam(req, "n")) or 0))
  elseif p == "/stats" then
    res:send(200, ("requests=%d\nlate_sends=%d\nlate_errors=%d\nkept_after_error=%s\n"):format(
      stats.requests, stats.late_sends, stats.late_errors, stats.kept_after_error or "none"))
  else
    res:send(404, "not found\n")
  end
end

return app
