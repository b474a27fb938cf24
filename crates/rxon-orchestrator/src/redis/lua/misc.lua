-- ARGV: prefix, op, ...
--   'undelivered' worker task: a cancel the listener could not write goes back into
--     the worker's heartbeat list, unless the task has moved on.
--   'unplaceable' task result keep: ends a still-queued task with this failure.
--   'limit' key max window: counts one request; returns the ms until the window
--     ends when over the limit, else -1.
local op = ARGV[2]
if op == 'undelivered' then
  local wid, id = ARGV[3], ARGV[4]
  if redis.call('LPOS', P .. ':wc:' .. wid, id) and not redis.call('LPOS', P .. ':wx:' .. wid, id) then
    redis.call('RPUSH', P .. ':wx:' .. wid, id)
  end
  return 1
elseif op == 'unplaceable' then
  local id = ARGV[3]
  local t = tk(id)
  local ph, ty = unpack(redis.call('HMGET', t, 'ph', 'type'))
  if ph ~= 'q' then return 0 end
  redis.call('HSET', t, 'ph', 'f', 'res', ARGV[4], 'rs', 'failure')
  unqueue(id, ty)
  ended(id, tonumber(ARGV[5]))
  changed()
  return 1
elseif op == 'limit' then
  local k = P .. ':rl:' .. ARGV[3]
  local n = redis.call('INCR', k)
  if n == 1 then redis.call('PEXPIRE', k, ARGV[5]) end
  if n > tonumber(ARGV[4]) then
    local left = redis.call('PTTL', k)
    if left < 0 then redis.call('PEXPIRE', k, ARGV[5]); left = tonumber(ARGV[5]) end
    return left
  end
  return -1
end
return redis.error_reply('unknown op')
