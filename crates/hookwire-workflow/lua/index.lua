-- Lists a stored run and claims its idempotency key, unless the key already names a run (a
-- start without a key needs no script: the store sends one ZADD).
-- KEYS[1] runs index (zset, by id), KEYS[2] idempotency keys (hash key -> id);
-- ARGV: id, idempotency key ('' none). Returns '' when indexed, else the id the key names.
if ARGV[2] ~= '' then
  local existing = redis.call('HGET', KEYS[2], ARGV[2])
  if existing and existing ~= ARGV[1] then
    return existing
  end
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[1])
end
redis.call('ZADD', KEYS[1], 0, ARGV[1])
return ''
