-- A node gives up one partition of one group after draining it: deletes its lease (when it
-- still holds it) and marks every entry of that partition still pending with the node as idle
-- for `idle` ms, so the next owner takes them over at once instead of after `claim_idle`.
-- KEYS: 1 the lease, 2 the partition's stream
-- ARGV: 1 lease value ("<node> <token>"), 2 group, 3 node, 4 idle (ms)
-- Returns the number of entries handed over.
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
local n, from = 0, '-'
for _ = 1, 100 do
  local rows = redis.call('XPENDING', KEYS[2], ARGV[2], from, '+', 1000, ARGV[3])
  if #rows == 0 then break end
  local cmd = {'XCLAIM', KEYS[2], ARGV[2], ARGV[3], 0}
  for _, r in ipairs(rows) do cmd[#cmd + 1] = r[1] end
  cmd[#cmd + 1] = 'IDLE'
  cmd[#cmd + 1] = ARGV[4]
  cmd[#cmd + 1] = 'JUSTID'
  redis.call(unpack(cmd))
  n = n + #rows
  from = '(' .. rows[#rows][1]
  if #rows < 1000 then break end
end
return n
