-- One worker's heartbeat: its fields, when it was written (server clock),
-- and an expiry, so a worker that stops beating disappears by itself.
-- KEYS: worker
-- ARGV: ttl_ms, then field/value pairs
-- Returns the time written (ms).
local ms = now_ms()
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'seen_at_ms', int(ms), unpack(ARGV, 2))
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return int(ms)
