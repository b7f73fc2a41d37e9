-- Schedules a member `delay_ms` after the server's now.
-- KEYS: schedule. ARGV: member, delay_ms. Returns the due time in ms.
local due = int(now_ms() + tonumber(ARGV[2]))
redis.call('ZADD', KEYS[1], due, ARGV[1])
return due
