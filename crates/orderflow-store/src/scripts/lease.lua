-- Prelude: take a stage lease if nobody holds it, with a fresh fencing
-- number from a counter that only grows. The holder asking again keeps its
-- number. Returns the fencing number, or false when someone else holds it.
local function take_lease(lease_key, fence_key, token, ttl_ms)
  local holder = redis.call('HMGET', lease_key, 'token', 'fencing')
  if holder[1] then
    if holder[1] == token then
      redis.call('PEXPIRE', lease_key, ttl_ms)
      return holder[2]
    end
    return false
  end
  local fencing = tostring(redis.call('INCR', fence_key))
  redis.call('HSET', lease_key, 'token', token, 'fencing', fencing)
  redis.call('PEXPIRE', lease_key, ttl_ms)
  return fencing
end
