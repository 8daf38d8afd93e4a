-- Several transitions in one call, on a standalone Redis only (their keys sit in different
-- Cluster slots): the script call's fixed cost, several times one transition's own work, is
-- paid once for the batch. KEYS: the runs; ARGV: per run its expected rev and packed new run.
-- Returns per run what `transition.lua` returns (1 written, 0 gone, else the stored run), or -1
-- for a run in the hash layout of earlier versions, which its caller moves with `legacy.lua`.
-- Two transitions of one run in a batch apply in order: the second sees the first's revision,
-- as it would have in a call of its own.
local out = {}
for i = 1, #KEYS do
  local want = ARGV[2 * i - 1] .. ' '
  local head = redis.pcall('GETRANGE', KEYS[i], 0, #want - 1)
  if type(head) == 'table' then
    out[i] = -1
  elseif head == want then
    redis.call('SET', KEYS[i], ARGV[2 * i])
    out[i] = 1
  elseif head == '' then
    out[i] = 0
  else
    out[i] = redis.call('GET', KEYS[i])
  end
end
return out
