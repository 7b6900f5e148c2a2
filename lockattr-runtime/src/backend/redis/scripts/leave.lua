-- Leave the queue. KEYS: lock. ARGV: ticket, owner token. Removes the ticket; if the key
-- was handed to this ticket, or the owner token took it (an attempt whose answer never
-- arrived), or it is free, hands it to the next live waiter. Runs after queue.lua.
local l = KEYS[1]
redis.call('ZREM', l .. ':queue', ARGV[1])
redis.call('ZREM', l .. ':queue:leases', ARGV[1])
local v = redis.call('GET', l)
if not v or v == 'q:' .. ARGV[1] or v == ARGV[2] or v == ARGV[2] .. '+' then hand_off(l) end
return 1
