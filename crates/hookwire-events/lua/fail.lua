-- A failed delivery of one stream entry to one group.
-- KEYS: 1 stream, 2 attempts hash (group), 3 failures hash (group), 4 dead-letter events,
--       5 dead-letter records, 6 dead-letter index (zset by time)
-- ARGV: 1 group, 2 entry id, 3 error chain (JSON array of strings), 4 now (ms),
--       5 max deliveries, 6 "1" to park at once (non-retryable), 7 the entry's reference in
--       the counters and the dead letters (its id on the main stream, "<partition>/<id>" on a
--       partition's stream: ids repeat across streams)
-- Returns {parked (0|1), attempts}. Parking copies the whole entry into the dead letters,
-- acknowledges it and forgets its counters in this one script, so no crash can lose it.
local now = tonumber(ARGV[4])
local ref = ARGV[7] or ARGV[2]
local n = redis.call('HINCRBY', KEYS[2], ref, 1)
local raw = redis.call('HGET', KEYS[3], ref)
local rec
if raw then rec = cjson.decode(raw) else rec = {first = now, failures = {}} end
local f = rec.failures
f[#f + 1] = {attempt = n, at = now, chain = cjson.decode(ARGV[3])}
while #f > 20 do table.remove(f, 1) end
if n < tonumber(ARGV[5]) and ARGV[6] ~= '1' then
  redis.call('HSET', KEYS[3], ref, cjson.encode(rec))
  return {0, n}
end
local entry = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local dlid = ARGV[1] .. '/' .. ref
if #entry > 0 then
  local fields = entry[1][2]
  local ev, t, k = nil, '', false
  for i = 1, #fields, 2 do
    if fields[i] == 'e' then ev = fields[i + 1]
    elseif fields[i] == 't' then t = fields[i + 1]
    elseif fields[i] == 'k' then k = fields[i + 1] end
  end
  if ev then
    redis.call('HSET', KEYS[4], dlid, ev)
    redis.call('HSET', KEYS[5], dlid, cjson.encode({
      group = ARGV[1], original_id = ARGV[2], type = t, key = k, attempts = n,
      failures = f, first = rec.first, last = now}))
    redis.call('ZADD', KEYS[6], now, dlid)
  end
end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
redis.call('HDEL', KEYS[2], ref)
redis.call('HDEL', KEYS[3], ref)
return {1, n}
