-- ARGV: prefix, task_id, worker_id, lease ('' none), catalog version, heartbeat epoch,
-- task type
-- The worker's catalog and state must be the ones the caller chose the task with.
local id, wid = ARGV[2], ARGV[3]
local w = wk(wid)
local st, cv, ep = unpack(redis.call('HMGET', w, 'st', 'cv', 'epoch'))
if st ~= 'a' then return {'gone'} end
if cv ~= ARGV[5] or ep ~= ARGV[6] then return {'stale'} end
local t = tk(id)
local ph, ty, p = unpack(redis.call('HMGET', t, 'ph', 'type', 'p'))
if not ph then
  -- A queue entry whose record is gone: drop it.
  unqueue(id, ARGV[7])
  return {'taken'}
end
if ph ~= 'q' then
  -- Not queued, yet in the queue: a stale entry; drop it.
  unqueue(id, ty)
  return {'taken'}
end
take(id, ty, wid, ARGV[4])
return {'ok', p}
