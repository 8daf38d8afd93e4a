-- Retention that never drops what a group still needs, and a hard cap that says when it does.
-- KEYS: 1 stream, 2 overrun counters (hash group -> count)
-- ARGV: 1 retention (entries), 2 hard cap (entries, 0 = none)
-- Once the stream is longer than the retention, entries every group has read and acknowledged
-- (older than each group's oldest pending entry and last-delivered id) are trimmed. If it is
-- still longer than the hard cap, it is cut to the cap and every group that lost entries it had
-- not finished gets its overrun counter raised; the names of those groups are returned.
local function parse(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end
local len = redis.call('XLEN', KEYS[1])
local retention = tonumber(ARGV[1])
local cap = tonumber(ARGV[2])
if len <= retention and (cap == 0 or len <= cap) then return {} end
local groups = redis.call('XINFO', 'GROUPS', KEYS[1])
-- The oldest entry a group still needs: its oldest pending entry or the first entry after its
-- last-delivered id, whichever is older; nil when it has read and acknowledged everything.
local needs = {}
local min = nil
local all_done = true
for _, g in ipairs(groups) do
  local name, last, pending
  for i = 1, #g, 2 do
    if g[i] == 'name' then name = g[i + 1]
    elseif g[i] == 'last-delivered-id' then last = g[i + 1]
    elseif g[i] == 'pending' then pending = g[i + 1] end
  end
  local need = nil
  if pending > 0 then
    local p = redis.call('XPENDING', KEYS[1], name, '-', '+', 1)
    if #p > 0 then need = p[1][1] end
  end
  local nx = redis.call('XRANGE', KEYS[1], '(' .. last, '+', 'COUNT', 1)
  if #nx > 0 and (need == nil or less(nx[1][1], need)) then need = nx[1][1] end
  if need ~= nil then
    all_done = false
    needs[#needs + 1] = {name, need}
    if min == nil or less(need, min) then min = need end
  end
end
if len > retention then
  if #groups == 0 then
    redis.call('XTRIM', KEYS[1], 'MAXLEN', '~', retention)
  elseif all_done then
    local lastid = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
    if #lastid > 0 then redis.call('XTRIM', KEYS[1], 'MINID', lastid[1][1]) end
  else
    redis.call('XTRIM', KEYS[1], 'MINID', min)
  end
end
local over = {}
if cap > 0 and redis.call('XLEN', KEYS[1]) > cap then
  redis.call('XTRIM', KEYS[1], 'MAXLEN', cap)
  local first = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
  if #first > 0 then
    for _, n in ipairs(needs) do
      if less(n[2], first[1][1]) then
        redis.call('HINCRBY', KEYS[2], n[1], 1)
        over[#over + 1] = n[1]
      end
    end
  end
end
return over
