-- ARGV: prefix, worker_id, registration, skills, skills_hash ('' none), skill count,
-- protocol, now, max_workers
local wid, now = ARGV[2], ARGV[8]
local w = wk(wid)
local all = P .. ':workers'
if redis.call('EXISTS', w) == 0 and redis.call('SCARD', all) >= tonumber(ARGV[9]) then
  -- Forget gone workers without a parked poll first.
  for _, other in ipairs(redis.call('SMEMBERS', all)) do
    local st = redis.call('HGET', wk(other), 'st')
    local parked = redis.call('ZCOUNT', P .. ':park:' .. other, '(' .. now, '+inf')
    if st ~= 'a' and parked == 0 then
      redis.call('DEL', wk(other), P .. ':wc:' .. other, P .. ':wx:' .. other, P .. ':park:' .. other)
      redis.call('SREM', all, other)
      redis.call('ZREM', P .. ':alive', other)
    end
  end
  if redis.call('SCARD', all) >= tonumber(ARGV[9]) then return 'full' end
end
redis.call('HSET', w, 'st', 'a', 'seen', now, 'reg', ARGV[3], 'skills', ARGV[4], 'nsk', ARGV[6], 'proto', ARGV[7], 'epoch', 0)
if ARGV[5] ~= '' then redis.call('HSET', w, 'hash', ARGV[5]) else redis.call('HDEL', w, 'hash') end
redis.call('HDEL', w, 'hb')
-- Catalog versions are unique over the whole state: a worker forgotten and registered
-- again never reuses one (processes cache catalogs by version).
redis.call('HSET', w, 'cv', redis.call('HINCRBY', N, 'cv', 1))
redis.call('SADD', all, wid)
redis.call('ZADD', P .. ':alive', 'GT', now, wid)
redis.call('PUBLISH', P .. ':work', '*')
changed()
return 'ok'
