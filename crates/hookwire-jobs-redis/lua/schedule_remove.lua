-- ARGV: id. Deletes a schedule with its count and last tick; returns 1 if it existed.
redis.call('HDEL', K_SCHED_LAST, ARGV[1])
redis.call('HDEL', K_SCHED_RUNS, ARGV[1])
return redis.call('HDEL', K_SCHED, ARGV[1])
