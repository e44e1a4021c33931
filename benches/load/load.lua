-- wrk script of the load benchmark (benches/load/run.sh).
--   KEYS_FILE=path  rotate "Authorization: Bearer <key>" over the keys in the file, one a line
--   BAD_KEY=token   send this (unknown) key on every request instead
--   neither         no Authorization header (the upstream measured directly)
-- At the end it prints one machine-readable line:
--   RESULT <requests> <duration_us> <req_per_s> <p50_us> <p99_us> <non_2xx_3xx> <socket_errors>

local keys = {}
local bad = os.getenv("BAD_KEY")
local file = os.getenv("KEYS_FILE")
if file and file ~= "" then
  for line in io.lines(file) do
    if line ~= "" then keys[#keys + 1] = "Bearer " .. line end
  end
end
local n = #keys
local i = 0

local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end

function init(args)
  -- Threads start at different offsets so they do not walk the keys in lock step.
  if n > 0 then i = (id * math.floor(n / 2)) % n end
end

function request()
  if n > 0 then
    i = i % n + 1
    return wrk.format(nil, nil, { ["Authorization"] = keys[i] })
  elseif bad and bad ~= "" then
    return wrk.format(nil, nil, { ["Authorization"] = "Bearer " .. bad })
  end
  return wrk.format(nil, nil, {})
end

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("RESULT %d %d %.1f %d %d %d %d\n",
    summary.requests, summary.duration,
    summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
