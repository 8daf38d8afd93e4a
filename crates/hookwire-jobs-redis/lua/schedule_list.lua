-- Returns a flat array: id, spec, runs, last tick (-1: none) per stored schedule.
local all = redis.call('HGETALL', K_SCHED)
local out = {}
for i = 1, #all, 2 do
  local id = all[i]
  out[#out + 1] = id
  out[#out + 1] = all[i + 1]
  out[#out + 1] = tonumber(redis.call('HGET', K_SCHED_RUNS, id) or '0')
  out[#out + 1] = tonumber(redis.call('HGET', K_SCHED_LAST, id) or '-1')
end
return out
