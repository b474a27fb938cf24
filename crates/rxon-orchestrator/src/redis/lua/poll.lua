-- ARGV: prefix, worker_id, now, parked until ('' when the poll ends), poll id.
-- Each parked poll has its own mark in `P:park:{worker}` (scored by the end of its
-- wait): no process reaps a worker with a poll parked anywhere, and a poll's end
-- clears its own mark only. Returns {catalog version, epoch, last heartbeat ('' none)}
-- or {} for a worker that is not active.
local wid, now, until_, pid = ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local w = wk(wid)
local pk = P .. ':park:' .. wid
local st, cv, ep, hb = unpack(redis.call('HMGET', w, 'st', 'cv', 'epoch', 'hb'))
if until_ == '' then redis.call('ZREM', pk, pid) end
if st ~= 'a' then return {} end
redis.call('HSET', w, 'seen', now)
if until_ ~= '' then
  redis.call('ZADD', pk, until_, pid)
  redis.call('ZADD', P .. ':alive', 'GT', until_, wid)
else
  -- Marks whose wait has passed belong to polls whose process went away.
  redis.call('ZREMRANGEBYSCORE', pk, '-inf', now)
  local score = tonumber(now)
  local last = redis.call('ZRANGE', pk, -1, -1, 'WITHSCORES')
  if last[2] and tonumber(last[2]) > score then score = tonumber(last[2]) end
  redis.call('ZADD', P .. ':alive', score, wid)
end
return {cv, ep, hb or ''}
