-- Runs after an id, filtered, in id order. Scans at most ARGV[7] ids per call so one call stays
-- short; returns {cursor, id, rev, body, status, workflow, org, ...} where cursor is the last
-- scanned id ('' once the index is exhausted) for the caller to continue from.
-- KEYS[1] runs index; ARGV: after ('' = start), limit, workflow ('' any), status ('' any),
-- org ('' any, else '=' .. org), run key prefix, scan cap
local start = '-'
if ARGV[1] ~= '' then start = '(' .. ARGV[1] end
local limit = tonumber(ARGV[2])
local cap = tonumber(ARGV[7])
local out = {''}
local found, scanned, last = 0, 0, ''
while found < limit and scanned < cap do
  local ids = redis.call('ZRANGEBYLEX', KEYS[1], start, '+', 'LIMIT', 0, 100)
  if #ids == 0 then
    return out
  end
  for _, id in ipairs(ids) do
    scanned = scanned + 1
    last = id
    local f = redis.call('HMGET', ARGV[6] .. id, 'rev', 'body', 'status', 'workflow', 'org')
    if f[1] and (ARGV[3] == '' or f[4] == ARGV[3]) and (ARGV[4] == '' or f[3] == ARGV[4])
      and (ARGV[5] == '' or f[5] == ARGV[5]) then
      out[#out + 1] = id
      for i = 1, 5 do out[#out + 1] = f[i] end
      found = found + 1
      if found >= limit then break end
    end
  end
  start = '(' .. last
end
out[1] = last
return out
