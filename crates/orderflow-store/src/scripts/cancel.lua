-- Records a cancellation request on the order, once. It bumps the version
-- (with an audit entry from the state to itself) so that a worker that read
-- the order before the request fails its compare-and-set and decides again,
-- now knowing the order is cancelled.
-- KEYS: state, audit
-- ARGV: order_id, actor, event, reason, correlation_id, policy_id
-- Returns {'missing'}, {'already', version, state, reason} or
-- {'ok', version, state, at_ms, entry_id, fields...}.
local cur = redis.call('HMGET', KEYS[1], 'state', 'version', 'cancel_requested')
if not cur[1] then
  return {'missing'}
end
if cur[3] then
  return {'already', cur[2], cur[1], cur[3]}
end
-- A cancel sent without a correlation id joins the order's own.
local correlation_id = ARGV[5]
if correlation_id == '' then
  correlation_id = redis.call('HGET', KEYS[1], 'correlation_id') or ''
end
local ms = now_ms()
redis.call('HSET', KEYS[1], 'cancel_requested', ARGV[4])
local version = tostring(redis.call('HINCRBY', KEYS[1], 'version', 1))
local id, fields = append_audit(KEYS[2], ms, ARGV[1], version, ARGV[2], cur[1], cur[1],
  ARGV[3], ARGV[4], '', correlation_id, ARGV[6])
return {'ok', version, cur[1], int(ms), id, unpack(fields)}
