-- Claims one message of one replay for its owner, unless it was sent or
-- someone else holds the claim. The owner asking again keeps it.
-- KEYS: record. ARGV: owner, ttl_ms.
-- Returns {'claimed'}, {'sent', at_ms, owner} or {'busy', owner}.
local cur = redis.call('HMGET', KEYS[1], 'state', 'owner', 'at_ms')
if not cur[1] then
  redis.call('HSET', KEYS[1], 'state', 'claimed', 'owner', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'claimed'}
end
if cur[1] == 'sent' then
  return {'sent', cur[3], cur[2]}
end
if cur[2] == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return {'claimed'}
end
return {'busy', cur[2]}
