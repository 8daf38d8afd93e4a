-- hookwire-sse bus fan-out: undo an accepted version whose envelope the bus refused, but only
-- while it is still the stored one (a newer publish from another node wins).
-- KEYS[1] = version key, KEYS[2] = state key
-- ARGV[1] = the refused version, ARGV[2] = previous version (-1: none), ARGV[3] = previous state
if tonumber(redis.call('GET', KEYS[1]) or '-1') ~= tonumber(ARGV[1]) then
  return 0
end
if tonumber(ARGV[2]) < 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
else
  redis.call('SET', KEYS[1], ARGV[2])
  redis.call('SET', KEYS[2], ARGV[3])
end
return 1
