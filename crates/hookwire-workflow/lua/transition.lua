-- One transition of a run: its state, its journal (the transition events, with their
-- sequence numbers) and the next task it expects all live in the run document, so writing the
-- document is the whole transition. Compare-and-set on the revision.
-- A run is one string: '<rev> <status> <workflow> <org length>\n<org><document>', so only its
-- first bytes are read to compare the revision, and a parked run costs one small key (a hash
-- holding a document over 64 bytes would leave the listpack encoding).
-- KEYS[1] the run (hash-tagged by its id); ARGV: expected rev, the packed new run.
-- Returns {'w'} when written, {} when the run is gone, else {'s', packed stored run}: the
-- caller retries without reading it again.
local head = redis.pcall('GETRANGE', KEYS[1], 0, 23)
if type(head) == 'table' then
  -- A run stored by an earlier version as a hash (rev, body, status, workflow, org): moved
  -- to the string layout by its next write.
  local f = redis.call('HMGET', KEYS[1], 'rev', 'body', 'status', 'workflow', 'org')
  if not f[1] then
    return {}
  end
  if f[1] ~= ARGV[1] then
    local org = f[5] or ''
    return {'s', f[1] .. ' ' .. (f[3] or '') .. ' ' .. (f[4] or '') .. ' ' .. #org .. '\n'
      .. org .. (f[2] or '')}
  end
  redis.call('DEL', KEYS[1])
  redis.call('SET', KEYS[1], ARGV[2])
  return {'w'}
end
if head == '' then
  return {}
end
if string.match(head, '^(%d+) ') ~= ARGV[1] then
  return {'s', redis.call('GET', KEYS[1])}
end
redis.call('SET', KEYS[1], ARGV[2])
return {'w'}
