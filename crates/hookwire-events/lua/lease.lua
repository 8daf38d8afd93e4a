-- One node's partition-lease tick for one group: heartbeat, renew what it holds, take free
-- partitions up to its fair share.
-- KEYS: 1 live nodes (zset node -> heartbeat ms), 2 fencing counters (hash partition -> token),
--       3.. the lease of partition 0, 1, … (value "<node> <token>")
-- ARGV: 1 node, 2 now (ms), 3 lease ttl (ms), 4 partitions held and counted ("p t,p t,…"),
--       5 partitions held but being released ("p t,…"), 6 first partition to try
-- Returns {share, {renewed partition…}, {acquired partition, token, …}}.
local node, now, ttl = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], now, node)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - ttl))
redis.call('PEXPIRE', KEYS[1], ttl * 4)
local live = redis.call('ZCARD', KEYS[1])
local parts = #KEYS - 2
local share = math.floor((parts + live - 1) / live)
local held, renewed, kept = {}, {}, 0
local function renew(list, counted)
  for p, t in string.gmatch(list, '(%d+) (%d+)') do
    local key = KEYS[3 + tonumber(p)]
    held[tonumber(p)] = true
    if key and redis.call('GET', key) == node .. ' ' .. t then
      redis.call('PEXPIRE', key, ttl)
      renewed[#renewed + 1] = tonumber(p)
      if counted then kept = kept + 1 end
    end
  end
end
renew(ARGV[4], true)
renew(ARGV[5], false)
local acquired = {}
local start = tonumber(ARGV[6]) % parts
for i = 0, parts - 1 do
  if kept >= share then break end
  local p = (start + i) % parts
  if not held[p] then
    local key = KEYS[3 + p]
    local cur = redis.call('GET', key)
    -- Free, or held by this node's previous life (same node id, lost token).
    if not cur or string.sub(cur, 1, #node + 1) == node .. ' ' then
      local token = redis.call('HINCRBY', KEYS[2], tostring(p), 1)
      redis.call('SET', key, node .. ' ' .. token, 'PX', ttl)
      acquired[#acquired + 1] = p
      acquired[#acquired + 1] = token
      kept = kept + 1
    end
  end
end
return {share, renewed, acquired}
