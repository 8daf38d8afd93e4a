-- ARGV: token, lease_ms, max, rate_max (0 = none), rate_per_ms, nacks,
--       then per ack: id, kind (C completed, R retry, F failed, D dead, L release), text, delay_ms.
-- Returns: { jobs (flat: id, record, attempts, stalled), stale ids, next_due_in_ms (-1),
--            rate_limited_ms (-1) }.
local now = now_ms()
local token, lease, max = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local rate_max, rate_per, nacks = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])

-- 1. acknowledgements, verified against the lease token in one HMGET
local stale = {}
if nacks > 0 then
  local ids = {}
  for i = 1, nacks do ids[i] = ARGV[7 + (i - 1) * 4] end
  local holders = redis.call('HMGET', K_LEASE, unpack(ids))
  local valid, kinds, texts, delays = {}, {}, {}, {}
  for i = 1, nacks do
    local o = 7 + (i - 1) * 4
    if holders[i] == token then
      valid[#valid + 1] = ids[i]
      kinds[#valid], texts[#valid], delays[#valid] = ARGV[o + 1], ARGV[o + 2], tonumber(ARGV[o + 3])
    else
      stale[#stale + 1] = ids[i]
    end
  end
  if #valid > 0 then
    redis.call('ZREM', K_ACTIVE, unpack(valid))
    redis.call('HDEL', K_LEASE, unpack(valid))
    local metas = redis.call('HMGET', K_META, unpack(valid))
    local removed, back, back_metas, delayed = {}, {}, {}, {}
    local kept, kept_res, keep_min = {}, {}, nil
    for i = 1, #valid do
      local id, kind, m = valid[i], kinds[i], metas[i]
      if m then
        local _, _, _, rc, rf = parse_meta(m)
        if kind == 'C' then
          if rc == 0 then
            removed[#removed + 1] = id
          else
            -- kept: batched below (a constant number of commands per claim call)
            kept[#kept + 1] = id
            kept_res[#kept_res + 1] = id
            kept_res[#kept_res + 1] = texts[i]
            if keep_min == nil or (rc > 0 and (keep_min < 0 or rc < keep_min)) then keep_min = rc end
          end
        elseif kind == 'R' then
          redis.call('HINCRBY', K_ATT, id, 1)
          redis.call('HSET', K_ERR, id, texts[i])
          if delays[i] > 0 then
            delayed[#delayed + 1] = int(now + delays[i])
            delayed[#delayed + 1] = id
          else
            back[#back + 1] = id
            back_metas[#back] = m
          end
        elseif kind == 'F' or kind == 'D' then
          redis.call('HINCRBY', K_ATT, id, 1)
          redis.call('HSET', K_ERR, id, texts[i])
          redis.call('HSET', K_FIN, id, int(now))
          if kind == 'D' then
            redis.call('ZADD', K_DEAD, int(now), id)
          else
            retain(K_FAILED, id, now, rf)
          end
        else -- 'L': release without counting an attempt
          back[#back + 1] = id
          back_metas[#back] = m
        end
      end
    end
    purge(removed)
    if #kept > 0 then
      local atts = redis.call('HMGET', K_ATT, unpack(kept))
      local att, fin, done = {}, {}, {}
      for i = 1, #kept do
        att[#att + 1] = kept[i]
        att[#att + 1] = tonumber(atts[i] or '0') + 1
        fin[#fin + 1] = kept[i]
        fin[#fin + 1] = int(now)
        done[#done + 1] = int(now)
        done[#done + 1] = kept[i]
      end
      att[#att + 1], att[#att + 2] = PIN, '1'
      fin[#fin + 1], fin[#fin + 2] = PIN, '1'
      kept_res[#kept_res + 1], kept_res[#kept_res + 2] = PIN, '1'
      redis.call('HSET', K_ATT, unpack(att))
      redis.call('HSET', K_FIN, unpack(fin))
      redis.call('HSET', K_RES, unpack(kept_res))
      redis.call('ZADD', K_COMPLETED, unpack(done))
      -- one trim per call, to the smallest "keep last N" among the batch
      if keep_min > 0 then trim(K_COMPLETED, keep_min) end
    end
    enqueue(back, back_metas, true)
    if #delayed > 0 then redis.call('ZADD', K_DELAYED, unpack(delayed)) end
  end
end

-- 2. promote due delayed jobs (bounded per call; the rest on the next call). The earliest is
--    read first: when none is due (the usual case) that one read also gives `next_due`, since
--    nothing below adds delayed jobs.
local first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES')
if #first > 0 and tonumber(first[2]) <= now then
  local due = redis.call('ZRANGEBYSCORE', K_DELAYED, '-inf', int(now), 'LIMIT', 0, 1000)
  local metas = redis.call('HMGET', K_META, unpack(due))
  redis.call('ZREM', K_DELAYED, unpack(due))
  enqueue(due, metas, false)
  first = nil
end

-- 3. the global rate limit: a fixed window opened by its first start (a paused queue leases
--    nothing, so it starts nothing either)
local n = max
if n > 0 and paused() then n = 0 end
local limited = -1
if rate_max > 0 and n > 0 then
  local used = tonumber(redis.call('GET', K_LIMIT) or '0')
  local allowed = rate_max - used
  if allowed < 0 then allowed = 0 end
  if allowed < n then
    if waiting() > allowed then
      limited = redis.call('PTTL', K_LIMIT)
      if limited < 1 then limited = 1 end
    end
    n = allowed
  end
end

-- 4. claim
local jobs = {}
local taken = 0
if n > 0 then
  local ids = take(n)
  taken = #ids
  if #ids > 0 then
    local active, leases = {}, {}
    local deadline = int(now + lease)
    for i = 1, #ids do
      local id = ids[i]
      active[#active + 1] = deadline
      active[#active + 1] = id
      leases[#leases + 1] = id
      leases[#leases + 1] = token
    end
    active[#active + 1], active[#active + 2] = '+inf', PIN
    leases[#leases + 1], leases[#leases + 2] = PIN, '1'
    redis.call('ZADD', K_ACTIVE, unpack(active))
    redis.call('HSET', K_LEASE, unpack(leases))
    -- The records go out whole: the client splits them, so Lua copies no data.
    local metas = redis.call('HMGET', K_META, unpack(ids))
    local atts = redis.call('HMGET', K_ATT, unpack(ids))
    local stalls = redis.call('HMGET', K_STALL, unpack(ids))
    for i = 1, #ids do
      jobs[#jobs + 1] = ids[i]
      jobs[#jobs + 1] = metas[i] or ''
      jobs[#jobs + 1] = tonumber(atts[i] or '0')
      jobs[#jobs + 1] = tonumber(stalls[i] or '0')
    end
    if rate_max > 0 then
      if redis.call('INCRBY', K_LIMIT, #ids) == #ids then
        redis.call('PEXPIRE', K_LIMIT, rate_per)
      end
    end
  end
end

-- 5. hand the wake-up on while work is left, so blocked workers share a burst. A claim that got
--    fewer jobs than it asked for has emptied both waiting structures: nothing is left.
if not (n > 0 and taken < n) and waiting() > 0 then mark() end

local next_due = -1
if first == nil then first = redis.call('ZRANGE', K_DELAYED, 0, 0, 'WITHSCORES') end
if #first > 0 then
  next_due = tonumber(first[2]) - now
  if next_due < 0 then next_due = 0 end
end
return { jobs, stale, next_due, limited }
