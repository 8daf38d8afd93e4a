-- ARGV: token, lease_ms, ids... Returns the ids whose lease the token no longer holds.
local now = now_ms()
local token, lease = ARGV[1], tonumber(ARGV[2])
local ids = {}
for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
if #ids == 0 then return {} end
local holders = redis.call('HMGET', K_LEASE, unpack(ids))
local lost, active = {}, {}
local deadline = int(now + lease)
for i = 1, #ids do
  if holders[i] == token then
    active[#active + 1] = deadline
    active[#active + 1] = ids[i]
  else
    lost[#lost + 1] = ids[i]
  end
end
if #active > 0 then redis.call('ZADD', K_ACTIVE, 'XX', unpack(active)) end
return lost
