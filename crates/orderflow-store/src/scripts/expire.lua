-- Removes every key of a finished order that has been archived, only if
-- the order is still as archived: the same version and the same last audit
-- entry (a note moves no version). A late change since the archive was
-- taken keeps the order, to be archived again.
-- KEYS: state, audit, then every other key of the order   (one slot)
-- ARGV: version, last audit entry id, finished states...
-- Returns {'expired', keys removed}, {'missing'} or {'changed', version, state}.
local cur = redis.call('HMGET', KEYS[1], 'state', 'version')
if not cur[1] then
  return {'missing'}
end
local finished = false
for i = 3, #ARGV do
  if cur[1] == ARGV[i] then
    finished = true
  end
end
local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
local last_id = ''
if #last > 0 then
  last_id = last[1][1]
end
if not finished or cur[2] ~= ARGV[1] or last_id ~= ARGV[2] then
  return {'changed', cur[2], cur[1]}
end
return {'expired', tostring(redis.call('DEL', unpack(KEYS)))}
