-- Publishes a dead letter's exact event bytes again, addressed to its group only, and removes
-- the dead letter.
-- KEYS: 1 stream, 2 dead-letter events, 3 dead-letter records, 4 dead-letter index
-- ARGV: 1 dead-letter id
-- Returns the new entry id, or false when the dead letter does not exist.
local ev = redis.call('HGET', KEYS[2], ARGV[1])
local raw = redis.call('HGET', KEYS[3], ARGV[1])
if not ev or not raw then return false end
local rec = cjson.decode(raw)
local id
if rec.key then
  id = redis.call('XADD', KEYS[1], '*', 'e', ev, 't', rec.type, 'g', rec.group, 'k', rec.key)
else
  id = redis.call('XADD', KEYS[1], '*', 'e', ev, 't', rec.type, 'g', rec.group)
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[1])
redis.call('ZREM', KEYS[4], ARGV[1])
return id
