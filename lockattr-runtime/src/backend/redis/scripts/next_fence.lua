-- next_fence(f): the next fencing token of the counter `f`, as a string (tokens pass 2^53,
-- where Lua's numbers stop being exact, so Lua never does arithmetic on them). A counter
-- that an INCR made from nothing is seeded from the server's clock in nanoseconds and kept
-- a day: a seed is greater than every token of an earlier counter, since no server runs
-- one command per nanosecond.
local function next_fence(f)
  redis.call('INCR', f)
  local v = redis.call('GET', f)
  if string.len(v) < 16 then
    local t = redis.call('TIME')
    v = t[1] .. string.format('%06d', tonumber(t[2])) .. '000'
    redis.call('SET', f, v, 'PX', 86400000)
  end
  return v
end
