-- One transition of a run: its state, its journal (the transition events, with their
-- sequence numbers) and the next task it expects all live in the run document, so writing the
-- document is the whole transition. Compare-and-set on the revision.
-- A run is one string: '<rev> <status> <workflow> <org length>\n<org><document>', so only the
-- revision's bytes are read to compare, and a parked run costs one small key (a hash holding a
-- document over 64 bytes would leave the listpack encoding).
-- KEYS[1] the run (hash-tagged by its id); ARGV: expected rev, the packed new run.
-- Returns 1 when written, 0 when the run is gone, else the stored run: the caller retries
-- without reading it again. The script is the cost of every step, so it is kept to two
-- commands and a string compare (a pattern match and a table reply cost a third more Redis
-- CPU); a run an earlier version stored as a hash fails it with WRONGTYPE, and the caller
-- moves that run with `legacy.lua`.
local want = ARGV[1] .. ' '
local head = redis.call('GETRANGE', KEYS[1], 0, #want - 1)
if head == want then
  redis.call('SET', KEYS[1], ARGV[2])
  return 1
end
if head == '' then
  return 0
end
return redis.call('GET', KEYS[1])
