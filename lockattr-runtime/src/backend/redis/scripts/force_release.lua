-- Forced release, an operator's break-glass. KEYS: lock. Ends the lease whoever holds it
-- and hands the key to the oldest live waiter, as a release does; the fencing counter is
-- left alone, so the next token is greater. Returns 1 if a lease was held (a key being
-- handed to a waiter, `q:<ticket>`, is not). Runs after queue.lua.
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 2) == 'q:' then return 0 end
hand_off(KEYS[1])
return 1
