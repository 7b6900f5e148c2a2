-- Extend. KEYS: lock. ARGV: owner token, ttl ms. Returns 1 if the token held the key.
local v = redis.call('GET', KEYS[1])
if v ~= ARGV[1] and v ~= ARGV[1] .. '+' then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
