-- The waiter queue of lock `l` (`l:queue`, tickets in arrival order; `l:queue:leases`,
-- their lease expiries):
-- now_ms(): the server's clock in milliseconds (read only when needed: TIME costs);
-- live_head(l): the oldest waiter whose lease has not run out, and what remains of that
-- lease (dropping stale waiters on the way);
-- hand_off(l): hands `l` to that waiter (set to `q:<ticket>` for what remains of its lease,
-- and the ticket published on `l:released`), or deletes `l` if nobody waits.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function live_head(l)
  local q, qx = l .. ':queue', l .. ':queue:leases'
  local now = nil
  while true do
    local head = redis.call('ZRANGE', q, 0, 0)[1]
    if not head then return nil end
    now = now or now_ms()
    local exp = redis.call('ZSCORE', qx, head)
    if exp and tonumber(exp) > now then return head, tonumber(exp) - now end
    redis.call('ZREM', q, head)
    redis.call('ZREM', qx, head)
  end
end
local function hand_off(l)
  local head, left = live_head(l)
  if head then
    redis.call('SET', l, 'q:' .. head, 'PX', left)
    redis.call('PUBLISH', l .. ':released', head)
  else
    redis.call('DEL', l)
  end
end
