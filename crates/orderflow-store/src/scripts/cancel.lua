-- Records a cancellation request on the order, once. It bumps the version
-- (with an audit entry from the state to itself) so that a worker that read
-- the order before the request fails its compare-and-set and decides again,
-- now knowing the order is cancelled.
--
-- A request for an order not created yet (a cancel that overtook its order,
-- a replacement order naming one still on its way) is kept in `early`
-- (the first one kept stands) when ARGV[9] holds the message to park should
-- the order never arrive; `create.lua` applies it in the order's creation.
-- Both run on the order's hash slot, so a cancel and its order meet exactly
-- once however their deliveries interleave.
-- KEYS: state, audit, early
-- ARGV: order_id, actor, event, reason, correlation_id, policy_id,
--       customer_id (the order must be this customer's; '' = anyone's),
--       only_in (states, comma-separated, in which the request applies;
--       '' = any), keep_message ('' = do not keep), keep_message_id
-- Returns {'missing'}, {'kept', kept_at_ms}, {'other_customer', customer_id},
-- {'too_late', version, state}, {'already', version, state, reason} or
-- {'ok', version, state, at_ms, entry_id, fields...}.
local cur = redis.call('HMGET', KEYS[1], 'state', 'version', 'cancel_requested', 'body')
if not cur[1] then
  if ARGV[9] == '' then
    return {'missing'}
  end
  if redis.call('EXISTS', KEYS[3]) == 0 then
    redis.call('HSET', KEYS[3], 'reason', ARGV[4], 'event', ARGV[3], 'actor', ARGV[2],
      'correlation_id', ARGV[5], 'policy_id', ARGV[6], 'customer_id', ARGV[7],
      'message', ARGV[9], 'message_id', ARGV[10], 'kept_at_ms', int(now_ms()))
  end
  return {'kept', redis.call('HGET', KEYS[3], 'kept_at_ms')}
end
if ARGV[7] ~= '' then
  local ok, placed = pcall(cjson.decode, cur[4])
  local owner = ok and type(placed) == 'table' and placed['customer_id'] or ''
  if owner ~= ARGV[7] then
    return {'other_customer', tostring(owner)}
  end
end
if ARGV[8] ~= '' and not string.find(',' .. ARGV[8] .. ',', ',' .. cur[1] .. ',', 1, true) then
  return {'too_late', cur[2], cur[1]}
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
