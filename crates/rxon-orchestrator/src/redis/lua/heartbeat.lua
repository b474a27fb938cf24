-- ARGV: prefix, worker_id, now, listed tasks (JSON array; '' for a heartbeat without
-- a body), heartbeat ('' none), skills ('' when it carries no catalog), skills_hash
-- ('' none), skill count. Returns {require_full_sync (0|1), cancels...} or {'gone'}.
local wid, now, listed = ARGV[2], ARGV[3], ARGV[4]
local w = wk(wid)
local ids = {}
if listed ~= '' then ids = cjson.decode(listed) end
for _, id in ipairs(ids) do confirm(wid, id) end
if redis.call('HGET', w, 'st') ~= 'a' then return {'gone'} end
touch(wid, now)
local full = 0
if ARGV[5] ~= '' then
  redis.call('HINCRBY', w, 'epoch', 1)
  redis.call('HSET', w, 'hb', ARGV[5])
  if ARGV[6] ~= '' then
    redis.call('HSET', w, 'skills', ARGV[6], 'nsk', ARGV[8])
    if ARGV[7] ~= '' then redis.call('HSET', w, 'hash', ARGV[7]) else redis.call('HDEL', w, 'hash') end
    redis.call('HSET', w, 'cv', redis.call('HINCRBY', N, 'cv', 1))
  elseif ARGV[7] ~= '' then
    local nsk, hash = unpack(redis.call('HMGET', w, 'nsk', 'hash'))
    if tonumber(nsk or '0') == 0 or hash ~= ARGV[7] then full = 1 end
  end
end
local x = P .. ':wx:' .. wid
local cancels = redis.call('LRANGE', x, 0, -1)
if listed ~= '' then
  -- Drop the cancels the worker is done with: confirmed earlier, no longer listed.
  local set = {}
  for _, id in ipairs(ids) do set[id] = true end
  local keep = {}
  for _, id in ipairs(cancels) do
    if set[id] or redis.call('HEXISTS', tk(id), 'lease') == 1 then table.insert(keep, id) end
  end
  redis.call('DEL', x)
  -- In chunks: unpack is bounded by Lua's stack.
  for i = 1, #keep, 1000 do
    redis.call('RPUSH', x, unpack(keep, i, math.min(i + 999, #keep)))
  end
  cancels = keep
end
local out = {full}
for _, id in ipairs(cancels) do table.insert(out, id) end
return out
