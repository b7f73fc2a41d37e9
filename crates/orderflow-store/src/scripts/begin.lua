-- The start of one delivery, in one round trip: take the stage lease, then
-- either find this message's idempotency record or count the run and read
-- the order.
-- KEYS: lease, fence, idem, attempts, state   (all of one order)
-- ARGV: token, ttl_ms
-- Returns {'busy'}, {'recorded', fencing, record} or
-- {'ready', fencing, runs, field, value, ...} (no fields: no such order).
local fencing = take_lease(KEYS[1], KEYS[2], ARGV[1], ARGV[2])
if not fencing then
  return {'busy'}
end
local record = redis.call('GET', KEYS[3])
if record then
  return {'recorded', fencing, record}
end
local runs = redis.call('INCR', KEYS[4])
local reply = {'ready', fencing, tostring(runs)}
for _, v in ipairs(redis.call('HGETALL', KEYS[5])) do
  reply[#reply + 1] = v
end
return reply
