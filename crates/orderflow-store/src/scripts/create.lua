-- Creates an order in `received` at version 1, unless it exists.
-- A cancellation kept for the order before it arrived (`cancel.lua`) is
-- applied in the same step: the order is created with `cancel_requested`
-- and an audit note saying who asked, so no worker ever sees it without
-- the request. A kept request naming another customer (a replacement order
-- of someone else's) is not applied; the note says so. Either way the kept
-- request is used up.
-- KEYS: state, audit, early
-- ARGV: order_id, body, correlation_id, policy_id, actor, event, customer_id
-- Returns {{'exists'}} or {{'ok', version, state, at_ms, entry_id, fields...}}
-- followed, when a kept request was met, by the note's
-- {'ok', version, state, at_ms, entry_id, fields...}.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {{'exists'}}
end
local ms = now_ms()
redis.call('HSET', KEYS[1], 'state', 'received', 'version', '1', 'body', ARGV[2],
  'correlation_id', ARGV[3], 'policy_id', ARGV[4],
  'created_at_ms', int(ms), 'updated_at_ms', int(ms))
local id, fields = append_audit(KEYS[2], ms, ARGV[1], '1', ARGV[5], '', 'received',
  ARGV[6], '', '', ARGV[3], ARGV[4])
local created = {'ok', '1', 'received', int(ms), id, unpack(fields)}
local kept = redis.call('HGETALL', KEYS[3])
if #kept == 0 then
  return {created}
end
local k = {}
for i = 1, #kept, 2 do
  k[kept[i]] = kept[i + 1]
end
redis.call('DEL', KEYS[3])
local event, reason = k['event'], k['reason']
if k['customer_id'] ~= '' and k['customer_id'] ~= ARGV[7] then
  event = 'order.supersede_refused'
  reason = reason .. ' refused: the replacement is customer ' .. k['customer_id'] ..
    '\'s, this order customer ' .. ARGV[7] .. '\'s'
else
  redis.call('HSET', KEYS[1], 'cancel_requested', reason)
end
local correlation_id = k['correlation_id']
if correlation_id == '' then
  correlation_id = ARGV[3]
end
local note_id, note_fields = append_audit(KEYS[2], ms, ARGV[1], '1', k['actor'],
  'received', 'received', event, reason, '', correlation_id, k['policy_id'])
return {created, {'ok', '1', 'received', int(ms), note_id, unpack(note_fields)}}
