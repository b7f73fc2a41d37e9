-- Extends a lease, only for its holder (same token and fencing number).
-- KEYS: lease. ARGV: token, fencing, ttl_ms. Returns 1 if extended.
local holder = redis.call('HMGET', KEYS[1], 'token', 'fencing')
if holder[1] == ARGV[1] and holder[2] == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
