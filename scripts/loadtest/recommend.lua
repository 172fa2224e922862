-- wrk script: POST /v1/recommend with a different real request body per call.
--   wrk -t1 -c32 -d20s -s scripts/loadtest/recommend.lua http://127.0.0.1:8000 -- bodies.jsonl [api-key]
-- bodies.jsonl holds one JSON request body per line (scripts/loadtest.py writes them from the histories
-- of real test users). Each thread starts at its own offset and walks the file round-robin; the final
-- summary is printed as one JSON line (latencies in ms) for scripts/loadtest.py to parse.
local threads = {}
local counter = 0

function setup(thread)
  thread:set("id", counter)
  counter = counter + 1
  table.insert(threads, thread)
end

function init(args)
  bodies = {}
  local path = args[1] or "bodies.jsonl"
  for line in io.lines(path) do
    if #line > 0 then bodies[#bodies + 1] = line end
  end
  if #bodies == 0 then error("no request bodies in " .. path) end
  pos = (id * 7919) % #bodies
  non2xx = 0
  wrk.method = "POST"
  wrk.path = "/v1/recommend"
  wrk.headers["Content-Type"] = "application/json"
  if args[2] and #args[2] > 0 then wrk.headers["Authorization"] = "Bearer " .. args[2] end
end

function request()
  pos = pos % #bodies + 1
  return wrk.format(nil, nil, nil, bodies[pos])
end

function response(status, headers, body)
  if status ~= 200 then non2xx = non2xx + 1 end
end

function done(summary, latency, requests)
  local bad = 0
  for _, t in ipairs(threads) do bad = bad + (t:get("non2xx") or 0) end
  local e = summary.errors
  local errors = e.connect + e.read + e.write + e.timeout + bad
  io.write(string.format(
    '{"requests": %d, "duration_s": %.3f, "rps": %.1f, "p50_ms": %.3f, "p95_ms": %.3f, "p99_ms": %.3f, ' ..
    '"max_ms": %.3f, "errors": %d, "non2xx": %d, "socket_errors": {"connect": %d, "read": %d, ' ..
    '"write": %d, "timeout": %d}}\n',
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6),
    latency:percentile(50) / 1e3, latency:percentile(95) / 1e3, latency:percentile(99) / 1e3,
    latency.max / 1e3, errors, bad, e.connect, e.read, e.write, e.timeout))
end
