-- KEYS: lease, fence. ARGV: token, ttl_ms
-- Returns the fencing number, or nil when someone else holds the lease.
return take_lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
