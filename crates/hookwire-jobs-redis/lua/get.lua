-- ARGV: ids... Returns per id:
-- { state, data, meta, attempts, stalled, error, result, finished, progress }
-- (state '' when the job does not exist).
local out = {}
for _, id in ipairs(ARGV) do
  local m = redis.call('HGET', K_META, id)
  if not m then
    out[#out + 1] = { '' }
  else
    local state = 'waiting'
    if redis.call('ZSCORE', K_ACTIVE, id) then state = 'active'
    elseif redis.call('ZSCORE', K_DELAYED, id) then state = 'delayed'
    elseif redis.call('ZSCORE', K_COMPLETED, id) then state = 'completed'
    elseif redis.call('ZSCORE', K_DEAD, id) then state = 'dead'
    elseif redis.call('ZSCORE', K_FAILED, id) then state = 'failed'
    end
    out[#out + 1] = {
      state, record_data(m), string.match(m, '^([^|]*|[^|]*|[^|]*|[^|]*|[^|]*)|') or m,
      redis.call('HGET', K_ATT, id) or '0', redis.call('HGET', K_STALL, id) or '0',
      redis.call('HGET', K_ERR, id) or false, redis.call('HGET', K_RES, id) or false,
      redis.call('HGET', K_FIN, id) or false, redis.call('HGET', K_PROG, id) or false,
    }
  end
end
return out
