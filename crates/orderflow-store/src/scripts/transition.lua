-- One compare-and-set move of an order, with everything that must agree
-- with it after a crash: the new state and fields, the step's idempotency
-- record and the audit entry land together or not at all.
-- KEYS: state, audit, [idem, steps], [fence, [lease]]   (all of one order: one slot)
-- ARGV: order_id, expected_version, from, to, reason, event, actor,
--       correlation_id, policy_id, rule, idem_result ('' = none),
--       fencing ('' = none), release ('1': drop the lease if still ours),
--       then field/value pairs to set
-- Returns {'missing'}, {'stale_fence', issued}, {'conflict', version, state}
-- or {'ok', version, state, at_ms, entry_id, fields...}.
local cur = redis.call('HMGET', KEYS[1], 'state', 'version')
if not cur[1] then
  return {'missing'}
end
local next_key = 3
local idem_key = false
local steps_key = false
if ARGV[11] ~= '' then
  idem_key = KEYS[next_key]
  steps_key = KEYS[next_key + 1]
  next_key = next_key + 2
end
local lease_key = false
if ARGV[12] ~= '' then
  local issued = redis.call('GET', KEYS[next_key]) or '0'
  if issued ~= ARGV[12] then
    return {'stale_fence', issued}
  end
  if ARGV[13] == '1' then
    lease_key = KEYS[next_key + 1]
  end
end
if cur[2] ~= ARGV[2] or cur[1] ~= ARGV[3] then
  return {'conflict', cur[2], cur[1]}
end

local ms = now_ms()
local version = tostring(redis.call('HINCRBY', KEYS[1], 'version', 1))
redis.call('HSET', KEYS[1], 'state', ARGV[4], 'updated_at_ms', int(ms), 'policy_id', ARGV[9])
if ARGV[5] == '' then
  redis.call('HDEL', KEYS[1], 'reason')
else
  redis.call('HSET', KEYS[1], 'reason', ARGV[5])
end
if #ARGV > 13 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 14))
end
if lease_key and redis.call('HGET', lease_key, 'fencing') == ARGV[12] then
  redis.call('DEL', lease_key)
end
if idem_key then
  redis.call('SET', idem_key, ARGV[11])
  -- Listed so the order's retention can remove every record it wrote.
  redis.call('SADD', steps_key, idem_key)
end
local id, fields = append_audit(KEYS[2], ms, ARGV[1], version, ARGV[7], ARGV[3], ARGV[4],
  ARGV[6], ARGV[5], ARGV[10], ARGV[8], ARGV[9])
return {'ok', version, ARGV[4], int(ms), id, unpack(fields)}
