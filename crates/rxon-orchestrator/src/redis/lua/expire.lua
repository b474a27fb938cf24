-- ARGV: prefix, now, limit. Requeues the tasks whose claim lapsed unconfirmed; safe
-- to run in every process at once. Returns how many.
local now = tonumber(ARGV[2])
local n = 0
local due = redis.call('ZRANGEBYSCORE', P .. ':leases', '-inf', now, 'WITHSCORES', 'LIMIT', 0, tonumber(ARGV[3]))
for i = 1, #due, 2 do
  local id, until_ = due[i], tonumber(due[i + 1])
  redis.call('ZREM', P .. ':leases', id)
  local t = tk(id)
  local ph, h, lease = unpack(redis.call('HMGET', t, 'ph', 'h', 'lease'))
  if ph == 'r' and tonumber(lease or '-1') == until_ then
    redis.call('HSET', t, 'lapsed', h)
    release(h, id)
    requeue(id)
    redis.call('HINCRBY', N, 'lapsed', 1)
    n = n + 1
  end
end
if n > 0 then changed() end
return n
