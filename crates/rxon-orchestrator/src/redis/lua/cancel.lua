-- ARGV: prefix, task_id, keep. Returns {'dequeued'} | {'signalled', holder, job} |
-- {'finished'} | {'unknown'}
local id = ARGV[2]
local t = tk(id)
local ph, ty, h, job = unpack(redis.call('HMGET', t, 'ph', 'type', 'h', 'job'))
if not ph then return {'unknown'} end
if ph == 'q' then
  redis.call('HSET', t, 'ph', 'c')
  unqueue(id, ty)
  ended(id, tonumber(ARGV[3]))
  changed()
  return {'dequeued'}
end
if ph == 'r' then
  redis.call('HSET', t, 'ph', 'c')
  local x = P .. ':wx:' .. h
  if not redis.call('LPOS', x, id) then redis.call('RPUSH', x, id) end
  ended(id, tonumber(ARGV[3]))
  changed()
  return {'signalled', h, job}
end
return {'finished'}
