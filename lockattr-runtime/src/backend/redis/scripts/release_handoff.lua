-- Release, continued (`v` is the lock's value): with min_hold, PEXPIRE to what remains of
-- it; otherwise hand the key to the oldest live waiter.
if v ~= ARGV[1] and v ~= ARGV[1] .. '+' then return 0 end
if ARGV[2] then
  local keep = tonumber(ARGV[2])
  local pttl = redis.call('PTTL', KEYS[1])
  if pttl < 0 or keep < pttl then redis.call('PEXPIRE', KEYS[1], keep) end
  return 1
end
hand_off(KEYS[1])
return 1
