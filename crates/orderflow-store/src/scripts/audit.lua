-- Prelude: audit entries.

-- RFC 3339, UTC, milliseconds. Redis' Lua has no os.date, so this is the
-- civil-from-days algorithm (H. Hinnant) on the Unix day number.
local function rfc3339(ms)
  local secs = math.floor(ms / 1000)
  local days = math.floor(secs / 86400)
  local sod = secs - days * 86400
  local z = days + 719468
  local era = math.floor(z / 146097)
  local doe = z - era * 146097
  local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524)
    - math.floor(doe / 146096)) / 365)
  local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
  local mp = math.floor((5 * doy + 2) / 153)
  local day = doy - math.floor((153 * mp + 2) / 5) + 1
  local month = mp < 10 and mp + 3 or mp - 9
  local year = yoe + era * 400
  if month <= 2 then year = year + 1 end
  return string.format('%04d-%02d-%02dT%02d:%02d:%02d.%03dZ', year, month, day,
    math.floor(sod / 3600), math.floor(sod % 3600 / 60), sod % 60, ms % 1000)
end

-- Appends one entry to the order's audit stream. Returns the entry id and
-- the flat field list, which the caller copies to the fleet-wide stream.
local function append_audit(key, ms, order_id, version, actor, from, to, event,
                            reason, rule, correlation_id, policy_id)
  local fields = {
    'at', rfc3339(ms), 'order_id', order_id, 'version', version,
    'actor', actor, 'from', from, 'to', to, 'event', event,
    'reason', reason, 'rule', rule,
    'correlation_id', correlation_id, 'policy_id', policy_id,
  }
  local id = redis.call('XADD', key, '*', unpack(fields))
  return id, fields
end
