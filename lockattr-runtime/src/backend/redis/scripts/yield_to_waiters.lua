-- Yield to waiters. KEYS: lock. ARGV: owner token. After an uncontended take that found
-- waiters queued: hands the key to the oldest live waiter (returns 0), or keeps it if none
-- is live (1). Runs after queue.lua.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
local head, left = live_head(KEYS[1])
if not head then return 1 end
redis.call('SET', KEYS[1], 'q:' .. head, 'PX', left)
redis.call('PUBLISH', KEYS[1] .. ':released', head)
return 0
