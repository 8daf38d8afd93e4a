-- ARGV: delayed (1/0), limit. Deletes up to `limit` waiting jobs (then delayed ones when asked)
-- with their records; returns how many. The caller repeats while a full batch came back, so one
-- call never blocks Redis for long.
local delayed, limit = ARGV[1] == '1', tonumber(ARGV[2])
local removed = 0
local ready = limit > 0 and redis.call('LPOP', K_READY, limit)
if ready then
  purge(ready)
  removed = #ready
end
for _, set in ipairs({K_WAIT, K_DELAYED}) do
  if set == K_DELAYED and not delayed then break end
  local left = limit - removed
  if left <= 0 then break end
  local ids = redis.call('ZRANGE', set, 0, left - 1)
  if #ids > 0 then
    redis.call('ZREM', set, unpack(ids))
    purge(ids)
    removed = removed + #ids
  end
end
return removed
