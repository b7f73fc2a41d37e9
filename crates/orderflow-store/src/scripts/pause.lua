-- Pauses a stage unless it is paused already; the first pause keeps its
-- reason, actor and time.
-- KEYS: pause
-- ARGV: reason, actor
-- Returns {'paused', since_ms} or {'already', reason, actor, since_ms}.
local cur = redis.call('HMGET', KEYS[1], 'reason', 'actor', 'since_ms')
if cur[3] then
  return {'already', cur[1] or '', cur[2] or '', cur[3]}
end
local ms = now_ms()
redis.call('HSET', KEYS[1], 'reason', ARGV[1], 'actor', ARGV[2], 'since_ms', int(ms))
return {'paused', int(ms)}
