-- ARGV: prefix, worker_id, now, parked until ('' when the poll ends).
-- Returns {catalog version, epoch, last heartbeat ('' none)} or {} for a worker that
-- is not active.
local wid, now = ARGV[2], ARGV[3]
local w = wk(wid)
local st, cv, ep, hb = unpack(redis.call('HMGET', w, 'st', 'cv', 'epoch', 'hb'))
if st ~= 'a' then return {} end
if ARGV[4] ~= '' then
  redis.call('HSET', w, 'seen', now, 'park', ARGV[4])
  redis.call('ZADD', P .. ':alive', 'GT', ARGV[4], wid)
else
  redis.call('HSET', w, 'seen', now, 'park', now)
  redis.call('ZADD', P .. ':alive', now, wid)
end
return {cv, ep, hb or ''}
