-- ARGV: state ('completed' | 'failed' | 'dead'), older_than_ms, limit. Deletes up to `limit`
-- jobs of that finished set that finished at or before now - older_than, oldest first, with
-- their records; returns their ids.
local sets = { completed = K_COMPLETED, failed = K_FAILED, dead = K_DEAD }
local set = sets[ARGV[1]]
if not set then return redis.error_reply('clean: not a finished state') end
local cutoff = now_ms() - tonumber(ARGV[2])
local ids = redis.call('ZRANGEBYSCORE', set, '-inf', int(cutoff), 'LIMIT', 0, tonumber(ARGV[3]))
if #ids > 0 then
  redis.call('ZREM', set, unpack(ids))
  purge(ids)
end
return ids
