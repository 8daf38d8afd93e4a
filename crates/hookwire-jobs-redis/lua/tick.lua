-- ARGV: schedule id, tick_ms, limit (0: none), then the job: id, data, priority, rc, rf.
-- Enqueues the tick's job only if the schedule exists, the tick is later than its last one and
-- the limit is not reached, so of many runtimes waking for one tick exactly one enqueues it.
-- Returns 'enqueued', 'done', 'limit' or 'removed'.
local sid, tick, limit = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
if redis.call('HEXISTS', K_SCHED, sid) == 0 then return 'removed' end
local last = tonumber(redis.call('HGET', K_SCHED_LAST, sid) or '-1')
if tick <= last then return 'done' end
local runs = tonumber(redis.call('HGET', K_SCHED_RUNS, sid) or '0')
if limit > 0 and runs >= limit then return 'limit' end
redis.call('HSET', K_SCHED_LAST, sid, int(tick))
redis.call('HINCRBY', K_SCHED_RUNS, sid, 1)
local id = ARGV[4]
if redis.call('HEXISTS', K_META, id) == 0 then
  local now = now_ms()
  local seq = redis.call('INCR', K_SEQ)
  redis.call('HSET', K_META, id,
    ARGV[6] .. '|' .. int(seq) .. '|' .. int(now) .. '|' .. ARGV[7] .. '|' .. ARGV[8] .. '|' .. ARGV[5])
  local prio = tonumber(ARGV[6])
  if prio == DEFAULT_PRIORITY then
    redis.call('RPUSH', K_READY, id)
  else
    redis.call('ZADD', K_WAIT, int(prio * SEQ_SPAN + (seq % SEQ_SPAN)), id)
  end
  mark()
end
return 'enqueued'
