-- wrk script: every thread owns one connection and one partition's state, and alternates
-- POST …/lock and DELETE …/lock on it, so each connection issues strict lock→unlock pairs.
-- Run with -t N -c N. Counts any non-200 answer as an error.
--
-- Besides wrk's per-request latency, it measures each lock→unlock *pair* directly: the time
-- from sending the lock to receiving the unlock's answer (CLOCK_MONOTONIC through LuaJIT's
-- FFI), so the pair percentiles are measured, not bounded. Pairs are counted only after a
-- one-second warm-up.
local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_nsec; } nclav_timespec;
  int clock_gettime(int clock, nclav_timespec *ts);
]]
local clock = ffi.new("nclav_timespec")
local function now_us()
  ffi.C.clock_gettime(1, clock)
  return tonumber(clock.tv_sec) * 1000000 + tonumber(clock.tv_nsec) / 1000
end

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
  pairs_us = {}
  pair_start = 0
  warm_until = now_us() + 1000000
end

function request()
  counter = counter + 1
  if counter % 2 == 1 then
    pair_start = now_us()
    return wrk.format("POST", lockPath, headers, lockBody)
  end
  return wrk.format("DELETE", lockPath, headers, lockBody)
end

function response(status, headers, body)
  if status ~= 200 then failures = failures + 1 end
  -- After an unlock's answer the counter is even: one pair is complete.
  if counter % 2 == 0 and pair_start > 0 then
    local finished = now_us()
    if finished > warm_until then pairs_us[#pairs_us + 1] = finished - pair_start end
  end
end

function done(summary, latency, requests)
  local failed, all = 0, {}
  for _, thread in ipairs(threads) do
    failed = failed + thread:get("failures")
    for _, value in ipairs(thread:get("pairs_us")) do all[#all + 1] = value end
  end
  table.sort(all)
  local function pct(p) return #all > 0 and all[math.max(1, math.ceil(#all * p / 100))] / 1000 or 0 end
  io.write(string.format("wrk lock/unlock requests: %d in %.2f s (%.0f req/s), non-200: %d\n",
    summary.requests, summary.duration / 1e6, summary.requests / (summary.duration / 1e6), failed))
  io.write(string.format("wrk per-request latency: p50 %.2f ms  p90 %.2f ms  p99 %.2f ms  max %.2f ms\n",
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
  io.write(string.format("lock+unlock pair, measured (%d pairs after warm-up): p50 %.2f ms  p99 %.2f ms  max %.2f ms (target p99 < 5 ms)\n",
    #all, pct(50), pct(99), pct(100)))
end
