-- wrk script for bench_imports.py: one write per request, each to a connection id never used before.
-- usage: wrk ... -s bench/post_connection.lua http://127.0.0.1:PORT -- <route> <secret key> <public key> <key> <run>
--   route "import":  POST /connection with the secret key (an API-key import)
--   route "api-key": POST /api-auth/api-key/<key>?connection_id=..&public_key=.. (a connect)

local route, auth, public_key, config_key, run
local thread_tag, sequence = "", 0

function init(args)
  route, auth, public_key, config_key, run = args[1], "Bearer " .. args[2], args[3], args[4], args[5]
  math.randomseed(os.time() + tonumber(tostring({}):match("0x(%x+)"), 16) % 100000)
  thread_tag = string.format("%06x", math.random(0, 0xffffff))
end

function request()
  sequence = sequence + 1
  local id = run .. "-" .. thread_tag .. "-" .. sequence
  if route == "import" then
    local body = '{"provider_config_key":"' .. config_key .. '","connection_id":"' .. id
      .. '","api_key":"phc_bench_' .. id .. '"}'
    return wrk.format("POST", "/connection",
      { ["Authorization"] = auth, ["Content-Type"] = "application/json" }, body)
  end
  local path = "/api-auth/api-key/" .. config_key .. "?connection_id=" .. id .. "&public_key=" .. public_key
  return wrk.format("POST", path, { ["Content-Type"] = "application/json" }, '{"apiKey":"phc_bench_' .. id .. '"}')
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"requests":%d,"duration_s":%.6f,"errors":%d,"non_2xx":%d,"p50_ms":%.3f,"p90_ms":%.3f,"p99_ms":%.3f,"max_ms":%.3f}\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
