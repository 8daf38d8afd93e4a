-- ARGV: offset, limit. Returns the ids in the dead-letter queue, oldest failure first.
local offset, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
if limit <= 0 then return {} end
return redis.call('ZRANGE', K_DEAD, offset, offset + limit - 1)
