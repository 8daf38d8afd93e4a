-- Shared by every script (prepended at build time, after `local DEFAULT_PRIORITY = <n>` from
-- hookwire-jobs). KEYS, in this order, all under one hash tag `{queue}`: 1 seq, 2 wait, 3 delayed,
-- 4 active, 5 lease, 6 ready, 7 meta, 8 att, 9 stall, 10 err, 11 res, 12 fin, 13 completed,
-- 14 failed, 15 dead, 16 mark, 17 limit, 18 prog, 19 paused (exists while the queue is paused),
-- 20 sched (schedule id → spec), 21 schedlast (id → last enqueued tick ms), 22 schedruns (id →
-- ticks enqueued).
-- meta value, the job's one record: "priority|seq|created_ms|remove_on_complete|remove_on_fail|data".
-- Waiting jobs at DEFAULT_PRIORITY (most jobs) sit in the `ready` list, FIFO; other priorities in
-- the `wait` sorted set by priority * 2^33 + seq. A list push and pop cost Redis a fraction of a
-- sorted-set insert and pop (no score to parse, format or keep ordered), and one record instead of
-- separate data and meta hashes saves a hash entry per job: together about a third of the Redis
-- CPU a job costs.
local K_SEQ, K_WAIT, K_DELAYED, K_ACTIVE, K_LEASE = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local K_READY, K_META, K_ATT, K_STALL, K_ERR = KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10]
local K_RES, K_FIN, K_COMPLETED, K_FAILED, K_DEAD = KEYS[11], KEYS[12], KEYS[13], KEYS[14], KEYS[15]
local K_MARK, K_LIMIT, K_PROG, K_PAUSED = KEYS[16], KEYS[17], KEYS[18], KEYS[19]
local K_SCHED, K_SCHED_LAST, K_SCHED_RUNS = KEYS[20], KEYS[21], KEYS[22]

local SEQ_SPAN = 8589934592 -- 2^33: score = priority * 2^33 + seq, exact in a double

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Numbers go to Redis as integers: Lua's default %.14g would round big scores.
local function int(x)
  return string.format('%d', x)
end

-- Hashes and sorted sets of up to 128 short entries use Redis's listpack encoding by default,
-- where every lookup, insert and delete scans the key. The lease hash and the active set hold
-- about a worker's concurrency and are touched for each claimed and finished job, as are the
-- finish hashes when completed jobs are kept: scans there cost each job several µs of Redis
-- CPU. One entry longer than 64 bytes (the default `*-max-listpack-value`) puts a key in a hash
-- table or skip list for as long as it holds that entry. The pin is such an entry, written by
-- the same command that writes the jobs' entries (score +inf, value '1'). It holds spaces, which
-- no job id may, and sorts at +inf in the active set, after every lease deadline, so no read by
-- id or by deadline returns it.
local PIN = 'hookwire pin: keeps this key in a hash table, whose lookups do not scan the key'

-- The numbers at the head of a record (the data after them is not copied).
local function parse_meta(m)
  local p, s, c, rc, rf = string.match(m, '^(%d+)|(%d+)|(%d+)|(-?%d+)|(-?%d+)|')
  return tonumber(p), tonumber(s), tonumber(c), tonumber(rc), tonumber(rf)
end

-- A record's data, for the admin read (claim and recovery hand the whole record to the client).
local function record_data(m)
  return string.match(m, '^%d+|%d+|%d+|%-?%d+|%-?%d+|(.*)$') or 'null'
end

-- Jobs waiting to be claimed, in both structures.
local function waiting()
  return redis.call('LLEN', K_READY) + redis.call('ZCARD', K_WAIT)
end

-- Puts jobs in their waiting structure. `front`: jobs that already waited their turn (retry
-- without delay, release, stall recovery, redrive) go ahead of every job of their priority that
-- arrived after them. Otherwise (delayed jobs coming due) they join the back of their priority,
-- as new arrivals. `ids` and `metas` are parallel; at most a few thousand per call.
local function enqueue(ids, metas, front)
  local base = 0
  if not front then base = redis.call('INCRBY', K_SEQ, #ids) - #ids end
  local listed, scored = {}, {}
  -- LPUSH puts its arguments one by one onto the head: walking backwards keeps `ids`' order.
  local from, to, step = 1, #ids, 1
  if front then from, to, step = #ids, 1, -1 end
  for i = from, to, step do
    local m = metas[i]
    if m then
      local p, s = parse_meta(m)
      if p == DEFAULT_PRIORITY then
        listed[#listed + 1] = ids[i]
      else
        if not front then s = base + i end
        scored[#scored + 1] = int(p * SEQ_SPAN + (s % SEQ_SPAN))
        scored[#scored + 1] = ids[i]
      end
    end
  end
  if #listed > 0 then redis.call(front and 'LPUSH' or 'RPUSH', K_READY, unpack(listed)) end
  if #scored > 0 then redis.call('ZADD', K_WAIT, unpack(scored)) end
  return #listed + #scored
end

-- Takes up to `n` waiting ids, best priority first: the sorted set below DEFAULT_PRIORITY, then
-- the ready list, then the sorted set above it.
local function take(n)
  local ids = {}
  if n <= 0 then return ids end
  local scored = redis.call('ZCARD', K_WAIT) > 0
  if scored then
    local urgent = redis.call('ZRANGE', K_WAIT, '-inf', '(' .. int(DEFAULT_PRIORITY * SEQ_SPAN),
      'BYSCORE', 'LIMIT', 0, n)
    if #urgent > 0 then
      redis.call('ZREM', K_WAIT, unpack(urgent))
      ids = urgent
    end
  end
  if #ids < n then
    local ready = redis.call('LPOP', K_READY, n - #ids)
    if ready then
      for i = 1, #ready do ids[#ids + 1] = ready[i] end
    end
  end
  if #ids < n and scored then
    local rest = redis.call('ZPOPMIN', K_WAIT, n - #ids)
    for i = 1, #rest, 2 do ids[#ids + 1] = rest[i] end
  end
  return ids
end

local function paused()
  return redis.call('EXISTS', K_PAUSED) == 1
end

-- Wakes one blocked worker. Not while paused: a woken worker would claim nothing and hand the
-- wake-up on, forever; resuming wakes them instead.
local function mark()
  if paused() then return end
  if redis.call('LLEN', K_MARK) == 0 then
    redis.call('RPUSH', K_MARK, '1')
  end
end

-- Deletes every field of the given job ids (at most a few thousand per call).
-- The side hashes exist only once some job retried, stalled, failed, was kept or reported
-- progress; until then one EXISTS spares six HDELs (each call from Lua costs Redis a few µs).
local function purge(ids)
  if #ids == 0 then return end
  redis.call('HDEL', K_META, unpack(ids))
  if redis.call('EXISTS', K_ATT, K_STALL, K_ERR, K_RES, K_FIN, K_PROG) == 0 then return end
  for _, k in ipairs({K_ATT, K_STALL, K_ERR, K_RES, K_FIN, K_PROG}) do
    redis.call('HDEL', k, unpack(ids))
  end
end

-- Keeps the newest `retention` members of a finished set, deleting the records of the rest
-- (at most 1000 per call; the remainder on the next finish).
local function trim(set, retention)
  local n = redis.call('ZCARD', set)
  if n > retention then
    local old = redis.call('ZPOPMIN', set, math.min(n - retention, 1000))
    local ids = {}
    for i = 1, #old, 2 do ids[#ids + 1] = old[i] end
    purge(ids)
  end
end

-- Adds `id` to a finished set under `retention` (-1 keep, 0 remove, N keep last N).
local function retain(set, id, now, retention)
  if retention == 0 then
    purge({id})
    return
  end
  redis.call('ZADD', set, int(now), id)
  if retention > 0 then trim(set, retention) end
end

local function push_all(key, cmd, args)
  -- unpack() is limited to a few thousand values: send in slices.
  local step = 2000
  for i = 1, #args, step do
    local last = math.min(i + step - 1, #args)
    redis.call(cmd, key, unpack(args, i, last))
  end
end
