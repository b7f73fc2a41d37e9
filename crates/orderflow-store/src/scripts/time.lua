-- Prelude: Redis' own clock. Leases, schedules and audit times all read the
-- server's clock, so workers on machines with skewed clocks still agree.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Integers travel as decimal strings: tostring() would switch to exponent
-- notation for large numbers.
local function int(x)
  return string.format('%.0f', x)
end
