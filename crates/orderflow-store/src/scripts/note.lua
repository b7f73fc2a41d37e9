-- An audit entry without a move ("re-check: still unknown"): recorded
-- against the order's current state and version, changing neither.
-- KEYS: state, audit
-- ARGV: order_id, actor, event, reason, rule, correlation_id, policy_id
-- Returns {'missing'} or {'ok', version, state, at_ms, entry_id, fields...}.
local cur = redis.call('HMGET', KEYS[1], 'state', 'version')
if not cur[1] then
  return {'missing'}
end
local ms = now_ms()
local id, fields = append_audit(KEYS[2], ms, ARGV[1], cur[2], ARGV[2], cur[1], cur[1],
  ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7])
return {'ok', cur[2], cur[1], int(ms), id, unpack(fields)}
