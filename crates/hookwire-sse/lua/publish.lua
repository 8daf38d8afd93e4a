-- hookwire-sse Redis fan-out: accept a publish only when its version is newer than the stored
-- one (or equal, for a snapshot publish), store version and state, and PUBLISH the envelope.
-- KEYS[1] = version key, KEYS[2] = state key
-- ARGV[1] = version, ARGV[2] = state JSON, ARGV[3] = pub/sub channel, ARGV[4] = envelope,
-- ARGV[5] = "1" when an equal version is acceptable
-- Returns -1 when accepted, else the stored version.
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
local v = tonumber(ARGV[1])
if v < cur or (v == cur and ARGV[5] ~= '1') then
  return cur
end
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
redis.call('PUBLISH', ARGV[3], ARGV[4])
return -1
