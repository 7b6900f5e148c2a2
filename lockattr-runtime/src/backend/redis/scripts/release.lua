-- Release. KEYS: lock. ARGV: owner token, and min_hold's remaining ms if any. Returns 1 if
-- the token held the key. Without waiters (no `+` mark) and min_hold it is a
-- compare-and-delete that returns before queue.lua's functions are even defined;
-- release_handoff.lua (after queue.lua) does the rest.
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] and not ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
