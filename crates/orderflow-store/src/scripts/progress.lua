-- Records where an accepted shipment is. A new step is kept with the time it
-- was first seen and audited; the same step again changes nothing, so the
-- reconciler can tell "no progress since" across replicas and restarts.
-- KEYS: state, audit
-- ARGV: order_id, actor, step, event, correlation_id, policy_id
-- Returns {'missing'}, {'same', since_ms} or (a new step, seen from at_ms)
-- {'ok', version, state, at_ms, entry_id, fields...}.
local cur = redis.call('HMGET', KEYS[1], 'state', 'version', 'fulfilment_step',
  'fulfilment_since_ms')
if not cur[1] then
  return {'missing'}
end
if cur[3] == ARGV[3] then
  return {'same', cur[4]}
end
local ms = now_ms()
redis.call('HSET', KEYS[1], 'fulfilment_step', ARGV[3], 'fulfilment_since_ms', int(ms))
local id, fields = append_audit(KEYS[2], ms, ARGV[1], cur[2], ARGV[2], cur[1], cur[1],
  ARGV[4], ARGV[3], '', ARGV[5], ARGV[6])
return {'ok', cur[2], cur[1], int(ms), id, unpack(fields)}
