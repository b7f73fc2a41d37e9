-- Records an order the store lost whole (a message proves it existed, at
-- version ARGV[2]) as escalated, one version past that message, so the
-- escalation is newer than anything announced before the loss. Nothing is
-- known of its body: the producer's message and the providers' records
-- are where a person looks. Does nothing if the order exists again.
-- KEYS: state, audit
-- ARGV: order_id, sent_at_version, reason, correlation_id, policy_id, actor, event, rule
-- Returns {'exists'} or {'ok', version, state, at_ms, entry_id, fields...}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {'exists'}
end
local ms = now_ms()
local version = tostring(tonumber(ARGV[2]) + 1)
redis.call('HSET', KEYS[1], 'state', 'escalated', 'version', version,
  'reason', ARGV[3], 'body', 'null', 'correlation_id', ARGV[4],
  'policy_id', ARGV[5], 'created_at_ms', int(ms), 'updated_at_ms', int(ms))
local id, fields = append_audit(KEYS[2], ms, ARGV[1], version, ARGV[6], '',
  'escalated', ARGV[7], ARGV[3], ARGV[8], ARGV[4], ARGV[5])
return {'ok', version, 'escalated', int(ms), id, unpack(fields)}
