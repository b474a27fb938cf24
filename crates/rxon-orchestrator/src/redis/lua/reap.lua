-- ARGV: prefix, now, worker ttl, limit. Marks silent workers as gone and requeues
-- what they held; safe to run in every process at once. Returns the gone ids.
local now, ttl = tonumber(ARGV[2]), tonumber(ARGV[3])
local gone = {}
local alive = P .. ':alive'
local due = redis.call('ZRANGEBYSCORE', alive, '-inf', '(' .. (now - ttl), 'LIMIT', 0, tonumber(ARGV[4]))
for _, wid in ipairs(due) do
  local w = wk(wid)
  local st, seen = unpack(redis.call('HMGET', w, 'st', 'seen'))
  local parked = redis.call('ZCOUNT', P .. ':park:' .. wid, '(' .. now, '+inf')
  if st ~= 'a' then
    redis.call('ZREM', alive, wid)
  elseif now - tonumber(seen or '0') > ttl and parked == 0 then
    redis.call('HSET', w, 'st', 'g')
    redis.call('DEL', P .. ':wx:' .. wid, P .. ':park:' .. wid)
    local held = redis.call('LRANGE', P .. ':wc:' .. wid, 0, -1)
    redis.call('DEL', P .. ':wc:' .. wid)
    for _, id in ipairs(held) do
      local t = tk(id)
      local ph, h, res = unpack(redis.call('HMGET', t, 'ph', 'h', 'res'))
      if ph == 'r' and h == wid then
        requeue(id)
      elseif ph == 'c' and h == wid and not res then
        redis.call('HDEL', t, 'h')
      end
    end
    redis.call('ZREM', alive, wid)
    redis.call('PUBLISH', P .. ':gone', wid)
    table.insert(gone, wid)
  end
end
if #gone > 0 then changed() end
return gone
