-- wrk script for bench_get_connection.py: GET /connection/c<i>?provider_config_key=<key> with the
-- secret key, spread round-robin over the connection ids, and the figures printed as one JSON line.
-- usage: wrk ... -s bench/get_connection.lua http://127.0.0.1:PORT -- <connections> <secret key> <key>

local count, auth, config_key
local next_id = 0

function init(args)
  count = tonumber(args[1])
  auth = "Bearer " .. args[2]
  config_key = args[3]
  -- Each wrk thread has its own Lua state: start them at different ids.
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 1000)
  next_id = math.random(0, count - 1)
end

function request()
  next_id = (next_id + 1) % count
  local path = "/connection/c" .. next_id .. "?provider_config_key=" .. config_key
  return wrk.format("GET", path, { ["Authorization"] = auth })
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_s":%.6f,"errors":%d,"non_2xx":%d,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
