-- hookwire-sse bus fan-out, version store: accept a publish only when its version is newer than
-- the stored one (or equal, for a snapshot publish) and store version and state. The envelope
-- itself travels on the event bus; this script only arbitrates between nodes.
-- KEYS[1] = version key, KEYS[2] = state key
-- ARGV[1] = version, ARGV[2] = state JSON, ARGV[3] = "1" when an equal version is acceptable
-- Returns {1, previous version (-1 if none), previous state or ""} when accepted, so a publish
-- the bus then refuses can be rolled back; {0, stored version, ""} when refused.
local cur = tonumber(redis.call('GET', KEYS[1]) or '-1')
local v = tonumber(ARGV[1])
if v < cur or (v == cur and ARGV[3] ~= '1') then
  return {0, cur, ''}
end
local prev = redis.call('GET', KEYS[2]) or ''
redis.call('SET', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2])
return {1, cur, prev}
