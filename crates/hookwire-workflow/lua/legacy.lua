-- The transition of a run stored by an earlier version as a hash (rev, body, status, workflow,
-- org): compare-and-set like `transition.lua`, with the same answers; a write moves the run to
-- the string layout.
-- KEYS[1] the run; ARGV: expected rev, the packed new run.
local f = redis.call('HMGET', KEYS[1], 'rev', 'body', 'status', 'workflow', 'org')
if not f[1] then
  return 0
end
if f[1] ~= ARGV[1] then
  local org = f[5] or ''
  return f[1] .. ' ' .. (f[3] or '') .. ' ' .. (f[4] or '') .. ' ' .. #org .. '\n'
    .. org .. (f[2] or '')
end
redis.call('DEL', KEYS[1])
redis.call('SET', KEYS[1], ARGV[2])
return 1
