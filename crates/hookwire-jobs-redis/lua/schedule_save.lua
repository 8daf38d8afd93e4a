-- ARGV: id, spec. Stores (or replaces) a schedule's description, keeping its count and last tick.
redis.call('HSET', K_SCHED, ARGV[1], ARGV[2])
return 1
