-- Creates an order in `received` at version 1, unless it exists.
-- KEYS: state, audit
-- ARGV: order_id, body, correlation_id, policy_id, actor, event
-- Returns {'exists'} or {'ok', version, state, at_ms, entry_id, fields...}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists'}
end
local ms = now_ms()
redis.call('HSET', KEYS[1], 'state', 'received', 'version', '1', 'body', ARGV[2],
  'correlation_id', ARGV[3], 'policy_id', ARGV[4],
  'created_at_ms', int(ms), 'updated_at_ms', int(ms))
local id, fields = append_audit(KEYS[2], ms, ARGV[1], '1', ARGV[5], '', 'received',
  ARGV[6], '', '', ARGV[3], ARGV[4])
return {'ok', '1', 'received', int(ms), id, unpack(fields)}
