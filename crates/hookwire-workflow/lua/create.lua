-- Stores a new run's hash, unless a run with that id exists.
-- KEYS[1] the run (hash-tagged by its id); ARGV: rev, body, status, workflow, org ('' none,
-- else '=' .. org). Returns 1 when stored, 0 when the id is taken.
if redis.call('EXISTS', KEYS[1]) == 1 then
  return 0
end
redis.call('HSET', KEYS[1], 'rev', ARGV[1], 'body', ARGV[2], 'status', ARGV[3],
  'workflow', ARGV[4], 'org', ARGV[5])
return 1
