-- wrk script of bench/run.py: POST one JSON body per request, cycling through a file
-- of bodies (one per line, the same user sequence the gRPC systems get), and print
-- the result as one JSON line (latencies in microseconds).
-- Usage: wrk -s post_json.lua URL -- /abs/path/bodies.txt

local bodies = {}
local counter = 0
local headers = { ["Content-Type"] = "application/json" }

function init(args)
  for line in io.lines(args[1]) do
    bodies[#bodies + 1] = line
  end
end

function request()
  counter = counter % #bodies + 1
  return wrk.format("POST", nil, headers, bodies[counter])
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_us":%d,"errors":%d,"status_errors":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.timeout,
    e.status, latency:percentile(50), latency:percentile(99)))
end
