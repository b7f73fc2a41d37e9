-- Removes a claimed member, unless someone rescheduled it since the claim
-- (its due time is no longer the claim's deadline).
-- KEYS: schedule. ARGV: member, claimed_until_ms. Returns 1 if removed.
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if score and tonumber(score) == tonumber(ARGV[2]) then
  redis.call('ZREM', KEYS[1], ARGV[1])
  return 1
end
return 0
