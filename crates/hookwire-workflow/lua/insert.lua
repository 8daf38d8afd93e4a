-- Stores a new run, unless its idempotency key already names a run.
-- KEYS[1] runs index (zset, by id), KEYS[2] idempotency keys (hash key -> id), KEYS[3] the run
-- ARGV: id, rev, body, status, workflow, org ('' none, else '=' .. org), idempotency key ('' none)
if ARGV[7] ~= '' then
  local existing = redis.call('HGET', KEYS[2], ARGV[7])
  if existing then
    return {'existing', existing}
  end
end
if redis.call('EXISTS', KEYS[3]) == 1 then
  return {'taken', ARGV[1]}
end
redis.call('HSET', KEYS[3], 'rev', ARGV[2], 'body', ARGV[3], 'status', ARGV[4],
  'workflow', ARGV[5], 'org', ARGV[6])
redis.call('ZADD', KEYS[1], 0, ARGV[1])
if ARGV[7] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[7], ARGV[1])
end
return {'new', ARGV[1]}
