-- wrk script: GET requests cycling through the paths of a file (`wrk ... -s paths.lua URL -- FILE`),
-- each thread from its own offset. Non-2xx answers are counted (wrk itself counts only >= 400), and
-- done() prints one line `WRKJSON {...}` that benchmarks/_wrk.py reads.
local paths = {}
local i = 0
local threads = {}
non2xx = 0
examples = ""

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
end

function init(args)
  for line in io.lines(args[1]) do
    if #line > 0 then table.insert(paths, line) end
  end
  i = ((tid or 1) * 7919) % #paths
end

function request()
  i = i % #paths + 1
  return wrk.format("GET", paths[i])
end

function response(status, headers, body)
  if status < 200 or status > 299 then
    non2xx = non2xx + 1
    if #examples < 400 then
      examples = examples .. status .. " " .. string.sub(body or "", 1, 160) .. " | "
    end
  end
end

-- shared by paths.lua and mixed.lua (each is loaded on its own by wrk: the function is repeated there)
function report(summary, latency, extra)
  local n, ex = 0, ""
  for _, t in ipairs(threads) do
    n = n + (t:get("non2xx") or 0)
    ex = ex .. (t:get("examples") or "")
  end
  ex = ex:gsub('[^%w%s%.,:;%-_/#%(%)%%|]', " ")
  local e = summary.errors
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"non2xx":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,' ..
    '"mean_us":%.1f%s,"examples":"%s"}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    n, latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean,
    extra or "", ex))
end

function done(summary, latency, requests)
  report(summary, latency, "")
end
