-- Claims up to `limit` due members: pushes each one's due time to now +
-- visibility and returns it, in one step, so two reconcilers never take
-- the same member at once. A claimer that dies leaves its members to come
-- due again when the visibility window ends.
-- KEYS: schedule. ARGV: limit, visibility_ms
-- Returns {claimed_until_ms, member, due_ms, member, due_ms, ...}.
local now = now_ms()
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', int(now), 'WITHSCORES',
  'LIMIT', 0, ARGV[1])
local claimed_until = int(now + tonumber(ARGV[2]))
local out = {claimed_until}
for i = 1, #due, 2 do
  redis.call('ZADD', KEYS[1], 'XX', claimed_until, due[i])
  out[#out + 1] = due[i]
  out[#out + 1] = due[i + 1]
end
return out
