-- wrk script: every thread owns one connection and one partition's state, and alternates
-- POST …/lock and DELETE …/lock on it, so each connection issues strict lock→unlock pairs.
-- Run with -t N -c N. Counts any non-200 answer as an error.
local counter, threads = 0, {}

function setup(thread)
  thread:set("index", #threads + 1)
  table.insert(threads, thread)
end

function init(args)
  token = args[1]
  lockPath = "/terraform/state/bench/wrk-" .. index .. "/lock"
  lockBody = '{"ID":"wrk-' .. index .. '","Operation":"OperationTypeApply","Info":"","Who":"wrk","Version":"1.11.4","Created":"2026-01-01T00:00:00Z","Path":""}'
  headers = { ["Authorization"] = "Bearer " .. token, ["Content-Type"] = "application/json" }
  failures = 0
end

function request()
  counter = counter + 1
  if counter % 2 == 1 then return wrk.format("POST", lockPath, headers, lockBody) end
  return wrk.format("DELETE", lockPath, headers, lockBody)
end

function response(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
end

function done(summary, latency, requests)
  local failed = 0
  for _, thread in ipairs(threads) do failed = failed + thread:get("failures") end
  io.write(string.format("wrk lock/unlock requests: %d in %.2f s (%.0f req/s), non-200: %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6), failed))
  io.write(string.format("wrk per-request latency: p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("lock+unlock pair (two sequential requests) p99 <= %.2f ms\n", 2 * latency:percentile(99) / 1000))
end
