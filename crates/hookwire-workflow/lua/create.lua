-- Stores a new run, unless a run with that id exists (in either layout).
-- KEYS[1] the run (hash-tagged by its id); ARGV[1] the packed run (see transition.lua).
-- Returns 1 when stored, 0 when the id is taken.
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  return 1
end
return 0
