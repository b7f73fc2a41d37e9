-- Drops a kept cancellation once it has been reported, unless another one
-- was kept since (then that one waits for its own report).
-- KEYS: early
-- ARGV: kept_at_ms
-- Returns 1 if dropped, else 0.
if redis.call('HGET', KEYS[1], 'kept_at_ms') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
