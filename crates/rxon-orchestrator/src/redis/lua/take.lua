-- ARGV: prefix, worker_id, lease ('' none), catalog version, heartbeat epoch, then
-- each skill the worker can start now followed by '1' (it declares no input schema)
-- or '0'. The fast path of a claim: when the oldest queued task over those skills is
-- of a skill without a schema and has no requirements, nothing can refuse it, and it
-- is taken here. Returns {'ok', payload}, {'none'} (nothing queued), {'slow'} (the
-- caller decides, then claims), {'stale'} (the worker changed) or {'gone'}.
local wid = ARGV[2]
local st, cv, ep = unpack(redis.call('HMGET', wk(wid), 'st', 'cv', 'epoch'))
if st ~= 'a' then return {'gone'} end
if cv ~= ARGV[4] or ep ~= ARGV[5] then return {'stale'} end
local best, bseq, bty, bplain
for i = 6, #ARGV - 1, 2 do
  local head = redis.call('ZRANGE', qk(ARGV[i]), 0, 0, 'WITHSCORES')
  if head[1] then
    local seq = tonumber(head[2])
    if not bseq or seq < bseq then
      best, bseq, bty, bplain = head[1], seq, ARGV[i], ARGV[i + 1]
    end
  end
end
if not best then return {'none'} end
if bplain ~= '1' then return {'slow'} end
local ph, r, p = unpack(redis.call('HMGET', tk(best), 'ph', 'r', 'p'))
if ph ~= 'q' or (r and r ~= '') then return {'slow'} end
take(best, bty, wid, ARGV[3])
return {'ok', p}
