-- wrk script of `make bench` (benchmarks/_wrk.py): `wrk ... -s load.lua URL -- FILE`.
--
-- FILE of paths (lines starting with "/"): GET requests cycling through them, each wrk thread from
-- its own offset.
-- FILE of the mixed load: lines `N <nearby path>`, `R <route path>`, `K <manager API key>` and
-- `S <station id> <version> <wrk thread>`. Each request is a nearby search (70 %), a route (20 %) or a
-- price write (10 %): PUT /v1/stations/{id}/prices with If-Match, 92# at 7.00-8.50 CNY. Each wrk thread
-- writes only its own stations, one write per station in flight, and takes the new version from the
-- answer ({"station_id":..,"version":..}; a 409 names the current one), so no writer sends a stale
-- version. With every own station busy, the request is a read instead (the counts show the mix sent).
--
-- Non-2xx answers are counted (wrk itself counts only >= 400); done() prints one line `WRKJSON {...}`.
local paths, nearby, routes, free, versions = {}, {}, {}, {}, {}
local key = ""
local i = 0
local threads = {}
non2xx, n_nearby, n_route, n_write = 0, 0, 0, 0
examples = ""

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  math.randomseed(1000 + (tid or 1))
  for line in io.lines(args[1]) do
    if line:sub(1, 1) == "/" then
      table.insert(paths, line)
    else
      local kind, rest = line:match("^(%u) (.+)$")
      if kind == "N" then
        table.insert(nearby, rest)
      elseif kind == "R" then
        table.insert(routes, rest)
      elseif kind == "K" then
        key = rest
      elseif kind == "S" then
        local id, v, owner = rest:match("^(%d+) (%d+) (%d+)$")
        if tonumber(owner) == (tid or 1) then
          versions[tonumber(id)] = tonumber(v)
          table.insert(free, tonumber(id))
        end
      end
    end
  end
  if #paths > 0 then
    i = ((tid or 1) * 7919) % #paths
  end
end

function request()
  if #paths > 0 then
    i = i % #paths + 1
    return wrk.format("GET", paths[i])
  end
  local x = math.random(100)
  if x <= 10 and #free > 0 then
    local j = math.random(#free)
    local id = free[j]
    free[j] = free[#free]
    free[#free] = nil
    n_write = n_write + 1
    local price = string.format("%.2f", 7.0 + math.random() * 1.5)
    return wrk.format("PUT", "/v1/stations/" .. id .. "/prices",
      {["X-API-Key"] = key, ["If-Match"] = '"' .. versions[id] .. '"', ["Content-Type"] = "application/json"},
      '{"prices":[{"grade":"92","price_cny":"' .. price .. '"}]}')
  elseif x <= 30 then
    n_route = n_route + 1
    return wrk.format("GET", routes[math.random(#routes)])
  end
  n_nearby = n_nearby + 1
  return wrk.format("GET", nearby[math.random(#nearby)])
end

function response(status, headers, body)
  if next(versions) ~= nil then
    local id, v = body:match('^{"station_id":(%d+),"version":(%d+)')
    if not id and status == 409 then
      id, v = body:match("station (%d+) is at version (%d+)")
    end
    if id then
      id = tonumber(id)
      if versions[id] then
        versions[id] = tonumber(v)
        table.insert(free, id)
      end
    end
  end
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if #examples < 400 then
      examples = examples .. status .. " " .. string.sub(body or "", 1, 160) .. " | "
    end
  end
end

function done(summary, latency, requests)
  local n, ex = 0, ""
  local sent = { 0, 0, 0 }
  for _, t in ipairs(threads) do
    n = n + (t:get("non2xx") or 0)
    ex = ex .. (t:get("examples") or "")
    sent[1] = sent[1] + (t:get("n_nearby") or 0)
    sent[2] = sent[2] + (t:get("n_route") or 0)
    sent[3] = sent[3] + (t:get("n_write") or 0)
  end
  ex = ex:gsub('[^%w%s%.,:;%-_/#%(%)%%|]', " ")
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"non2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f,"sent":{"nearby":%d,"route":%d,"write":%d},"examples":"%s"}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    n, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    sent[1], sent[2], sent[3], ex))
end
