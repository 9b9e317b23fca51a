-- One wrk script for every endpoint the bench measures (bench/run.py starts it).
-- wrk ... -s bench/wrk.lua URL -- MODE TOKEN SESSIONS LEASE_FILE RUN_ID THREADS
--   floor            GET /floor?id=N on the floor app (bench/floor): one primary-key read, JSON out
--   ping             GET /api/ping (authenticated, no work: DRF and the token lookup)
--   select_continue  POST /api/select for an existing session that keeps its profile
--   select_new       POST /api/select for a key never seen before
--   report_success   POST /api/report success, with a fresh lease, for a session on that profile
--   report_failure   POST /api/report rate_limit for the profile a session is on: it fails over
-- The session mapping (provider i % 10, kind (i // 10) % 20) is bench/data.py's.
-- Every response is read: non-2xx answers (by class, with the first one's body) and failovers are counted, and
-- done() prints one JSON line that bench/run.py parses.

local threads = {}
local next_tid = 0

function setup(thread)
   thread:set("tid", next_tid)
   next_tid = next_tid + 1
   table.insert(threads, thread)
end

local mode, nsess, run_id, nthreads
local headers = {}
local lines = {}
local pos = 0
local counter = 0

-- globals so done() can read them through thread:get
answered, bad, failovers, duplicates, exhausted = 0, 0, 0, 0, 0
s429, s4xx, s5xx, sother = 0, 0, 0, 0
first_bad = ""

local function kind(i)
   return math.floor(i / 10) % 20
end

function init(args)
   mode = args[1]
   nsess = tonumber(args[3])
   run_id = args[5]
   nthreads = tonumber(args[6])
   headers["Authorization"] = "Bearer " .. args[2]
   headers["Content-Type"] = "application/json"
   headers["X-Bench-Phase"] = mode
   math.randomseed(os.time() * 1000 + tid * 7919)
   if args[4] ~= "-" then
      -- lines "session_key<TAB>profile<TAB>lease_id"; thread t takes every nthreads-th from t
      local n = 0
      for line in io.lines(args[4]) do
         if n % nthreads == tid then
            local key, profile, lease = line:match("^([^\t]+)\t([^\t]+)\t([^\t]+)$")
            table.insert(lines, {key, profile, lease})
         end
         n = n + 1
      end
   end
end

local function plain_session()
   local i
   repeat
      i = math.random(0, nsess - 1)
   until kind(i) < 18
   return i
end

function request()
   if mode == "floor" then
      return wrk.format("GET", "/floor?id=" .. math.random(1, nsess), headers)
   elseif mode == "ping" then
      return wrk.format("GET", "/api/ping", headers)
   elseif mode == "select_continue" then
      local i
      repeat
         i = math.random(0, nsess - 1)
      until kind(i) ~= 18 -- auto pins idle past the cache window may go home: that is a change
      local body = '{"session_key":"agent:main:bench:dm:' .. i .. '","provider":"prov' .. (i % 10) .. '"}'
      return wrk.format("POST", "/api/select", headers, body)
   elseif mode == "select_new" then
      counter = counter + 1
      local body = '{"session_key":"new:' .. run_id .. ':' .. tid .. ':' .. counter ..
         '","provider":"prov' .. math.random(0, 9) .. '"}'
      return wrk.format("POST", "/api/select", headers, body)
   else
      local outcome = (mode == "report_success") and "success" or "rate_limit"
      pos = pos + 1
      local entry = lines[pos]
      local body
      if entry then
         body = '{"profile":"' .. entry[2] .. '","outcome":"' .. outcome .. '","session_key":"' .. entry[1] ..
            '","lease_id":"' .. entry[3] .. '"}'
      else
         -- ran past the prepared leases: keep the load on, without a lease (counted, reported)
         exhausted = exhausted + 1
         local i = plain_session()
         body = '{"profile":"prov' .. (i % 10) .. ':key0000","outcome":"' .. outcome ..
            '","session_key":"agent:main:bench:dm:' .. i .. '"}'
      end
      return wrk.format("POST", "/api/report", headers, body)
   end
end

function response(status, hdrs, body)
   answered = answered + 1
   if status < 200 or status > 299 then
      bad = bad + 1
      if status == 429 then
         s429 = s429 + 1
      elseif status >= 400 and status < 500 then
         s4xx = s4xx + 1
      elseif status >= 500 then
         s5xx = s5xx + 1
      else
         sother = sother + 1
      end
      if first_bad == "" then
         first_bad = status .. " " .. string.sub(body or "", 1, 300)
      end
   elseif mode == "report_failure" and body:find('"failover":{', 1, true) then
      failovers = failovers + 1
   end
   if status == 200 and body:find('"duplicate":true', 1, true) then
      duplicates = duplicates + 1
   end
end

function done(summary, latency, requests)
   local t = {answered = 0, bad = 0, failovers = 0, duplicates = 0, exhausted = 0,
              s429 = 0, s4xx = 0, s5xx = 0, sother = 0}
   local first = ""
   for _, thread in ipairs(threads) do
      for name, _ in pairs(t) do
         t[name] = t[name] + (tonumber(thread:get(name)) or 0)
      end
      if first == "" then
         first = thread:get("first_bad") or ""
      end
   end
   first = first:gsub('[%c"\\]', " ")
   local e = summary.errors
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"connect_errors":%d,"read_errors":%d,"write_errors":%d,' ..
      '"status_errors":%d,"timeouts":%d,"p50_us":%d,"p90_us":%d,"p95_us":%d,"p99_us":%d,"mean_us":%.1f,' ..
      '"max_us":%d,"answered":%d,"bad":%d,"failovers":%d,"duplicates":%d,"exhausted":%d,' ..
      '"status_429":%d,"status_4xx":%d,"status_5xx":%d,"status_other":%d,"first_bad":"%s"}\n',
      summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
      latency.mean, latency.max, t.answered, t.bad, t.failovers, t.duplicates, t.exhausted,
      t.s429, t.s4xx, t.s5xx, t.sother, first))
end
