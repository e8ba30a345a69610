-- wrk script: POST /api/v1/consents with a unique, valid body per request.
-- wrk ... -s consent_post.lua URL -- NONCE NOTICE_VERSION BANNER_HASH ORIGIN COOKIE_NOTICE_VERSION [PATH]
-- NONCE is 8 hex digits, fresh per run; each request's event_id is
-- NONCE-THREAD-RAND-RAND-COUNTER, so ids are unique within and across runs.

local counter = 0
local threads = {}

function setup(thread)
   thread:set("tid", #threads + 1)
   table.insert(threads, thread)
end

function init(args)
   nonce = args[1]
   notice_version = args[2]
   banner_hash = args[3]
   origin = args[4]
   cookie_notice_version = args[5]
   path = args[6] or "/api/v1/consents"
   math.randomseed(tonumber(nonce, 16) + tid)
   headers = {["Origin"] = origin, ["Content-Type"] = "text/plain;charset=UTF-8"}
end

local actions = {
   function(i) return "accept_all", "true", "true", "true" end,
   function(i) return "reject_all", "false", "false", "false" end,
   function(i) return "custom", tostring(i % 2 == 0), tostring(i % 3 == 0), "false" end,
}

function request()
   counter = counter + 1
   local event_id = string.format("%s-%04x-4%03x-8%03x-%012x", nonce, tid,
                                  math.random(0, 4095), math.random(0, 4095), counter)
   local action, pref, analytics, marketing = actions[counter % 3 + 1](counter)
   local body = '{"site":"demo","event_id":"' .. event_id .. '","action":"' .. action ..
      '","choices":{"necessary":true,"preferences":' .. pref .. ',"analytics":' .. analytics ..
      ',"marketing":' .. marketing .. '},"notice_version":"' .. notice_version ..
      '","cookie_notice_version":"' .. cookie_notice_version ..
      '","banner_hash":"' .. banner_hash .. '","lang":"fi","ui_surface":"banner",' ..
      '"page":"/pricing","widget_version":"bench","gpc":false}'
   return wrk.format("POST", path, headers, body)
end

-- One JSON line that bench/run.py reads.
function done(summary, latency, requests)
   io.write(string.format(
      'WRKJSON {"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"mean_us":%d}\n',
      summary.requests, summary.duration, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.status, summary.errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
