-- The fleet-wide retry budget of one downstream: a sliding window of
-- one-second buckets of first attempts (f:<sec>) and retries (r:<sec>).
-- KEYS: budget hash
-- ARGV: op ('retry' | 'peek'), window_s, ratio, min_per_window,
--       first attempts to count first (a process's tally since its last call)
-- Returns {granted (0/1), retries_left}: a retry is granted while the
-- window's retries stay below ratio × first attempts + min_per_window.
local now_s = math.floor(now_ms() / 1000)
local window = tonumber(ARGV[2])
local oldest = now_s - window + 1
local firsts, retries = 0, 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local kind, sec = string.match(all[i], '^(%a):(%d+)$')
  sec = tonumber(sec)
  if sec == nil or sec < oldest then
    redis.call('HDEL', KEYS[1], all[i])
  elseif kind == 'f' then
    firsts = firsts + tonumber(all[i + 1])
  else
    retries = retries + tonumber(all[i + 1])
  end
end
local tally = tonumber(ARGV[5])
if tally > 0 then
  redis.call('HINCRBY', KEYS[1], 'f:' .. int(now_s), tally)
  firsts = firsts + tally
end
local allowed = math.floor(tonumber(ARGV[3]) * firsts) + tonumber(ARGV[4])
local left = math.max(allowed - retries, 0)
local granted = 0
if ARGV[1] == 'retry' and left > 0 then
  redis.call('HINCRBY', KEYS[1], 'r:' .. int(now_s), 1)
  granted = 1
  left = left - 1
end
redis.call('EXPIRE', KEYS[1], window * 2)
return {granted, left}
