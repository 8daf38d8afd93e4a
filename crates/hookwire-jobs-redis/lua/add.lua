-- ARGV: n, then per job: id ('' = generate), data, priority, delay_ms, rc, rf.
-- Returns a flat array: id, created (1/0) per job.
local now = now_ms()
local n = tonumber(ARGV[1])
local base = redis.call('INCRBY', K_SEQ, n) - n
local out, meta, ready, wait, delayed, seen = {}, {}, {}, {}, {}, {}
local earliest = nil
for i = 1, n do
  local o = 2 + (i - 1) * 6
  local id = ARGV[o]
  local seq = base + i
  local exists = false
  if id == '' then
    id = int(seq)
  else
    exists = seen[id] or redis.call('HEXISTS', K_META, id) == 1
  end
  if exists then
    out[#out + 1] = id
    out[#out + 1] = 0
  else
    seen[id] = true
    local prio, delay = tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3])
    meta[#meta + 1] = id
    meta[#meta + 1] = ARGV[o + 2] .. '|' .. int(seq) .. '|' .. int(now) .. '|' .. ARGV[o + 4] .. '|' .. ARGV[o + 5] .. '|' .. ARGV[o + 1]
    if delay > 0 then
      local due = now + delay
      if earliest == nil or due < earliest then earliest = due end
      delayed[#delayed + 1] = int(due)
      delayed[#delayed + 1] = id
    elseif prio == DEFAULT_PRIORITY then
      ready[#ready + 1] = id
    else
      wait[#wait + 1] = int(prio * SEQ_SPAN + (seq % SEQ_SPAN))
      wait[#wait + 1] = id
    end
    out[#out + 1] = id
    out[#out + 1] = 1
  end
end
if #meta > 0 then push_all(K_META, 'HSET', meta) end
local wake = #wait > 0 or #ready > 0
if #delayed > 0 then
  local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
  if #first == 0 or earliest < tonumber(first[2]) then wake = true end
  push_all(K_DELAYED, 'ZADD', delayed)
end
if #wait > 0 then push_all(K_WAIT, 'ZADD', wait) end
if #ready > 0 then push_all(K_READY, 'RPUSH', ready) end
if wake then mark() end
return out
