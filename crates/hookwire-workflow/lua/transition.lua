-- One transition of a run: its state, its journal (the transition events, with their
-- sequence numbers) and the next task it expects all live in the run document, so writing the
-- document is the whole transition. Compare-and-set on the revision.
-- KEYS[1] the run (hash-tagged by its id); ARGV: expected rev, new rev, body, status.
-- Returns {'w'} when written, {} when the run is gone, else {'s', rev, body, status, workflow,
-- org}: the stored run, so the caller retries without reading it again.
local f = redis.call('HMGET', KEYS[1], 'rev', 'body', 'status', 'workflow', 'org')
if not f[1] then
  return {}
end
if f[1] ~= ARGV[1] then
  return {'s', f[1], f[2] or '', f[3] or '', f[4] or '', f[5] or ''}
end
redis.call('HSET', KEYS[1], 'rev', ARGV[2], 'body', ARGV[3], 'status', ARGV[4])
return {'w'}
