-- ARGV: max_stalled, dead_letter (1/0). Returns { requeued ids, failed ids, jobs } where jobs is
-- flat (id, record, attempts, stalled) for every recovered job, read before retention can
-- remove a failed job's record.
local now = now_ms()
local max_stalled, dead = tonumber(ARGV[1]), ARGV[2] == '1'
local expired = redis.call('ZRANGEBYSCORE', K_ACTIVE, '-inf', int(now), 'LIMIT', 0, 1000)
local requeued, requeued_metas, failed, jobs = {}, {}, {}, {}
if #expired == 0 then return { requeued, failed, jobs } end
redis.call('ZREM', K_ACTIVE, unpack(expired))
redis.call('HDEL', K_LEASE, unpack(expired))
for _, id in ipairs(expired) do
  local m = redis.call('HGET', K_META, id)
  if m then
    local stalled = redis.call('HINCRBY', K_STALL, id, 1)
    jobs[#jobs + 1] = id
    jobs[#jobs + 1] = m
    jobs[#jobs + 1] = tonumber(redis.call('HGET', K_ATT, id) or '0')
    jobs[#jobs + 1] = stalled
    if stalled > max_stalled then
      redis.call('HSET', K_ERR, id, 'job stalled more than ' .. max_stalled .. ' times')
      redis.call('HSET', K_FIN, id, int(now))
      if dead then
        redis.call('ZADD', K_DEAD, int(now), id)
      else
        local _, _, _, _, rf = parse_meta(m)
        retain(K_FAILED, id, now, rf)
      end
      failed[#failed + 1] = id
    else
      requeued[#requeued + 1] = id
      requeued_metas[#requeued] = m
    end
  end
end
if enqueue(requeued, requeued_metas, true) > 0 then mark() end
return { requeued, failed, jobs }
