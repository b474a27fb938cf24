-- ARGV: prefix, task_id, worker_id, result, status, now, keep
-- Returns {verdict}: accepted | unknown | duplicate_other | late | unassigned |
-- cancelled | mismatch | late_now
local id, wid, res, status, now = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
touch(wid, now)
local t = tk(id)
local ph, h, old, lapsed, dl, ty = unpack(redis.call('HMGET', t, 'ph', 'h', 'res', 'lapsed', 'dl', 'type'))
if not ph then return 'unknown' end
if ph == 'f' then
  if old == res then return 'accepted' end
  return 'duplicate_other'
end
if ph == 'x' then return 'late' end
if ph == 'q' then
  if lapsed ~= wid then return 'unassigned' end
  -- The claim lapsed unconfirmed, yet the worker had the task after all: take its
  -- result rather than run the task again.
  unqueue(id, ty)
  redis.call('HSET', t, 'ph', 'r', 'h', wid)
  redis.call('HDEL', t, 'lapsed')
  ph, h = 'r', wid
end
if ph == 'c' then
  if old == res then return 'accepted' end
  if h ~= wid then return 'cancelled' end
  redis.call('HDEL', t, 'h')
  release(wid, id)
  changed()
  if status == 'cancelled' then
    redis.call('HSET', t, 'res', res, 'rs', status)
    redis.call('HINCRBY', N, 'applied', 1)
    return 'accepted'
  end
  return 'cancelled'
end
if h ~= wid then return 'mismatch' end
local verdict
if dl and tonumber(now) > tonumber(dl) then
  redis.call('HSET', t, 'ph', 'x')
  verdict = 'late_now'
else
  redis.call('HSET', t, 'ph', 'f', 'res', res, 'rs', status)
  redis.call('HINCRBY', N, 'applied', 1)
  verdict = 'accepted'
end
redis.call('HDEL', t, 'lease')
release(wid, id)
ended(id, tonumber(ARGV[7]))
changed()
return verdict
