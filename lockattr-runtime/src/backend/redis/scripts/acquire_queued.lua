-- A waiter's attempt. KEYS: lock. ARGV: owner token, ttl ms, waiter lease ms, ticket.
-- Takes the key if it was handed to this ticket, or is free with no other live waiter
-- ahead; otherwise queues (or refreshes) the ticket and marks the holder's value with `+`,
-- so that its release hands the key on. Returns the fence (a string), or `-1 - pttl`.
-- Runs after next_fence.lua and queue.lua.
local l, ticket = KEYS[1], ARGV[4]
local q, qx = l .. ':queue', l .. ':queue:leases'
local v = redis.call('GET', l)
local mine = v == 'q:' .. ticket
if not v then
  local head = live_head(l)
  mine = head == nil or head == ticket
  if not mine then hand_off(l) end
end
if mine then
  redis.call('ZREM', q, ticket)
  redis.call('ZREM', qx, ticket)
  local value = ARGV[1]
  if redis.call('EXISTS', q) == 1 then value = value .. '+' end
  redis.call('SET', l, value, 'PX', ARGV[2])
  return next_fence(l .. ':fence')
end
if not redis.call('ZSCORE', q, ticket) then
  local last = redis.call('ZRANGE', q, -1, -1, 'WITHSCORES')
  local seq = 1
  if last[2] then seq = tonumber(last[2]) + 1 end
  redis.call('ZADD', q, string.format('%d', seq), ticket)
end
local lease = tonumber(ARGV[3])
redis.call('ZADD', qx, string.format('%d', now_ms() + lease), ticket)
redis.call('PEXPIRE', q, 2 * lease)
redis.call('PEXPIRE', qx, 2 * lease)
v = redis.call('GET', l)
if v and string.len(v) == 32 then redis.call('APPEND', l, '+') end
local pttl = redis.call('PTTL', l)
if pttl < 0 then pttl = 0 end
return -1 - pttl
