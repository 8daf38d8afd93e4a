-- ARGV: ids... (none: the oldest 1000). Moves dead jobs back to waiting, attempts reset.
local ids = {}
if #ARGV == 0 then
  ids = redis.call('ZRANGE', K_DEAD, 0, 999)
else
  ids = ARGV
end
local moved = 0
for _, id in ipairs(ids) do
  if redis.call('ZREM', K_DEAD, id) == 1 then
    local m = redis.call('HGET', K_META, id)
    if m then
      redis.call('HDEL', K_ATT, id)
      redis.call('HDEL', K_STALL, id)
      redis.call('HDEL', K_FIN, id)
      moved = moved + enqueue({id}, {m}, true)
    end
  end
end
if moved > 0 then mark() end
return moved
