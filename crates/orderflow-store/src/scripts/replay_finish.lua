-- Marks a claimed message sent (ARGV[3] = 'sent', kept keep_ms) or drops
-- the claim (ARGV[3] = 'release'), only for the claim's owner.
-- KEYS: record. ARGV: owner, keep_ms, 'sent' | 'release'.
-- Returns 1 if done, 0 if the claim is not the owner's (any more).
local cur = redis.call('HMGET', KEYS[1], 'state', 'owner')
if cur[1] ~= 'claimed' or cur[2] ~= ARGV[1] then
  return 0
end
if ARGV[3] == 'release' then
  redis.call('DEL', KEYS[1])
  return 1
end
redis.call('HSET', KEYS[1], 'state', 'sent', 'at_ms', int(now_ms()))
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
