-- Returns waiting, active, completed, failed, delayed, dead.
local active = redis.call('ZCARD', K_ACTIVE)
if redis.call('ZSCORE', K_ACTIVE, PIN) then active = active - 1 end
return {
  waiting(), active, redis.call('ZCARD', K_COMPLETED),
  redis.call('ZCARD', K_FAILED), redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_DEAD),
}
