-- ARGV: prefix, task_id, type, job, payload, requirements, deadline ('' none), now, max_unfinished
local id, ty, job = ARGV[2], ARGV[3], ARGV[4]
local t = tk(id)
if redis.call('EXISTS', t) == 1 then return 'duplicate' end
if tonumber(redis.call('HGET', N, 'unfinished') or '0') >= tonumber(ARGV[9]) then return 'full' end
local seq = redis.call('HINCRBY', N, 'seq', 1)
redis.call('HSET', t, 'p', ARGV[5], 'r', ARGV[6], 'type', ty, 'job', job, 'seq', seq, 'enq', ARGV[8], 'ph', 'q')
if ARGV[7] ~= '' then redis.call('HSET', t, 'dl', ARGV[7]) end
redis.call('ZADD', qk(ty), seq, id)
redis.call('SADD', P .. ':qtypes', ty)
redis.call('ZADD', P .. ':job:' .. job, seq, id)
redis.call('HINCRBY', N, 'queued', 1)
redis.call('HINCRBY', N, 'unfinished', 1)
redis.call('PUBLISH', P .. ':work', ty)
changed()
return 'ok'
