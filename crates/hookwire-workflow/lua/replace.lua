-- One transition: writes the run if its stored revision is the expected one (compare-and-set).
-- KEYS[1] the run; ARGV: expected rev, new rev, body, status
local cur = redis.call('HGET', KEYS[1], 'rev')
if not cur or cur ~= ARGV[1] then
  return 0
end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'body', ARGV[3], 'status', ARGV[4])
return 1
