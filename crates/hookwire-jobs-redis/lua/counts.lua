-- Returns waiting, active, completed, failed, delayed, dead.
return {
  waiting(), redis.call('ZCARD', K_ACTIVE), redis.call('ZCARD', K_COMPLETED),
  redis.call('ZCARD', K_FAILED), redis.call('ZCARD', K_DELAYED), redis.call('ZCARD', K_DEAD),
}
