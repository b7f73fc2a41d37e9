-- One page of a state's index, in the index's order (score, then member
-- byte by byte), after the cursor: the last entry of the previous page. If
-- that order is still there with the same score the page starts right after
-- it; if it has left the state since, right after where it was — so entries
-- leaving or joining meanwhile never make a reader skip one that stayed.
-- KEYS: index
-- ARGV: after_score ('' = from the start), after_member, limit
-- Returns {member, score, member, score, ...}
local function before(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x < y
    end
  end
  return #a < #b
end
local limit = tonumber(ARGV[3])
local start = 0
if ARGV[1] ~= '' then
  local score = tonumber(ARGV[1])
  local current = redis.call('ZSCORE', KEYS[1], ARGV[2])
  if current and tonumber(current) == score then
    start = redis.call('ZRANK', KEYS[1], ARGV[2]) + 1
  else
    start = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[1])
    for _, member in ipairs(redis.call('ZRANGEBYSCORE', KEYS[1], ARGV[1], ARGV[1])) do
      if before(member, ARGV[2]) then
        start = start + 1
      end
    end
  end
end
return redis.call('ZRANGE', KEYS[1], start, start + limit - 1, 'WITHSCORES')
