-- ARGV: 1 pause, 0 resume. Resuming wakes a worker when work is waiting (each claim hands the
-- wake-up on while work is left) or delayed (the claim promotes it and learns the next due time).
if ARGV[1] == '1' then
  redis.call('SET', K_PAUSED, '1')
else
  redis.call('DEL', K_PAUSED)
  if waiting() > 0 or redis.call('ZCARD', K_DELAYED) > 0 then mark() end
end
return 1
