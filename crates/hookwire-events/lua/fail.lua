-- A failed delivery of one event (one stream entry, or one event of a pack) to one group.
-- KEYS: 1 stream, 2 attempts hash (group), 3 failures hash (group), 4 dead-letter events,
--       5 dead-letter records, 6 dead-letter index (zset by time)
-- ARGV: 1 group, 2 entry id, 3 error chain (JSON array of strings), 4 now (ms),
--       5 max deliveries, 6 "1" to park at once (non-retryable), 7 the event's reference in
--       the counters and the dead letters (its entry id on the main stream, "<partition>/<id>"
--       on a partition's stream: ids repeat across streams; "#<n>" appended for a pack's
--       event n), 8 the event's index in a pack, or "" for an entry holding one event
-- Returns {parked (0|1), attempts}. Parking copies the whole event into the dead letters. An
-- entry of one event is acknowledged and its counters forgotten in this same script, so no
-- crash can lose it. A pack's event is marked parked instead (the consumer acknowledges the
-- pack once all its events are finished and then forgets the marks); a parked event that is
-- delivered again and fails again is not parked twice.
local now = tonumber(ARGV[4])
local ref = ARGV[7] or ARGV[2]
local part = tonumber(ARGV[8] or '')
if part and redis.call('HGET', KEYS[2], ref) == 'parked' then return {1, 0} end
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
  local want = part or 0
  local ev, t, k = nil, '', false
  local at = -1
  for i = 1, #fields, 2 do
    local name = fields[i]
    if name == 'e' then
      at = at + 1
      if at > want then break end
      if at == want then ev = fields[i + 1] end
    elseif at == want then
      if name == 't' then t = fields[i + 1]
      elseif name == 'k' then k = fields[i + 1] end
    end
  end
  if ev then
    local record = {group = ARGV[1], original_id = ARGV[2], type = t, key = k, attempts = n,
      failures = f, first = rec.first, last = now}
    if part then record.part = part end
    redis.call('HSET', KEYS[4], dlid, ev)
    redis.call('HSET', KEYS[5], dlid, cjson.encode(record))
    redis.call('ZADD', KEYS[6], now, dlid)
  end
end
redis.call('HDEL', KEYS[3], ref)
if part then
  redis.call('HSET', KEYS[2], ref, 'parked')
else
  redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
  redis.call('HDEL', KEYS[2], ref)
end
return {1, n}
