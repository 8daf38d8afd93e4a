-- ARGV: token, id, progress. Stores the progress if the token holds the lease; returns 1/0.
if redis.call('HGET', K_LEASE, ARGV[2]) ~= ARGV[1] then return 0 end
redis.call('HSET', K_PROG, ARGV[2], ARGV[3])
return 1
