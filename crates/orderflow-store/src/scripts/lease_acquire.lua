-- Takes a stage lease if nobody holds it, with a fresh fencing number from a
-- counter that only grows. The holder asking again keeps its number.
-- KEYS: lease, fence. ARGV: token, ttl_ms
-- Returns the fencing number, or nil when someone else holds the lease.
local holder = redis.call('HMGET', KEYS[1], 'token', 'fencing')
if holder[1] then
  if holder[1] == ARGV[1] then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
    return holder[2]
  end
  return false
end
local fencing = tostring(redis.call('INCR', KEYS[2]))
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'fencing', fencing)
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return fencing
