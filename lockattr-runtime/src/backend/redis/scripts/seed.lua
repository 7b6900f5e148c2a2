-- Seed. KEYS: the fencing counter. Seeds it if an INCR made it from nothing; returns the
-- next token. Runs after next_fence.lua.
return next_fence(KEYS[1])
