-- Shared by every script (prepended to each). ARGV[1] is the key prefix; every key
-- of one orchestrator starts with it. Times are milliseconds since the Unix epoch,
-- from the calling process.
local P = ARGV[1]
local N = P .. ':n'
local function tk(id) return P .. ':t:' .. id end
local function wk(id) return P .. ':w:' .. id end
local function qk(ty) return P .. ':q:' .. ty end

-- The worker running a task: its holder while running or cancelled, else nil.
local function holder_of(ph, h)
  if ph == 'r' or ph == 'c' then return h end
  return nil
end

local function changed() redis.call('PUBLISH', P .. ':ev', '') end

-- Puts a task back in its type's queue at its enqueue position.
local function requeue(id)
  local t = tk(id)
  local ty, seq = unpack(redis.call('HMGET', t, 'type', 'seq'))
  redis.call('HSET', t, 'ph', 'q')
  redis.call('HDEL', t, 'lease', 'h')
  redis.call('ZADD', qk(ty), seq, id)
  redis.call('SADD', P .. ':qtypes', ty)
  redis.call('HINCRBY', N, 'queued', 1)
  redis.call('PUBLISH', P .. ':work', ty)
end

local function unqueue(id, ty)
  if redis.call('ZREM', qk(ty), id) == 1 then redis.call('HINCRBY', N, 'queued', -1) end
  if redis.call('EXISTS', qk(ty)) == 0 then redis.call('SREM', P .. ':qtypes', ty) end
end

local function release(w, id)
  redis.call('LREM', P .. ':wc:' .. w, 0, id)
  redis.call('LREM', P .. ':wx:' .. w, 0, id)
end

-- A task ended: forget the oldest ended tasks beyond the retention bound.
local function ended(id, keep)
  redis.call('HINCRBY', N, 'unfinished', -1)
  redis.call('RPUSH', P .. ':ended', id)
  while redis.call('LLEN', P .. ':ended') > keep do
    local old = redis.call('LPOP', P .. ':ended')
    local job = redis.call('HGET', tk(old), 'job')
    if job then redis.call('ZREM', P .. ':job:' .. job, old) end
    redis.call('ZREM', P .. ':leases', old)
    redis.call('DEL', tk(old), P .. ':tp:' .. old, P .. ':te:' .. old)
  end
end

-- Contact from an active worker.
local function touch(w, now)
  if redis.call('HGET', wk(w), 'st') == 'a' then
    redis.call('HSET', wk(w), 'seen', now)
    redis.call('ZADD', P .. ':alive', 'GT', now, w)
  end
end

-- `w` showed it has task `id`: its claim no longer lapses.
local function confirm(w, id)
  local t = tk(id)
  local ph, h = unpack(redis.call('HMGET', t, 'ph', 'h'))
  if holder_of(ph, h) == w then
    redis.call('HDEL', t, 'lease')
    redis.call('ZREM', P .. ':leases', id)
  end
end

-- Worker `wid` takes queued task `id` of type `ty`, with a lease until `lease` ('' none).
local function take(id, ty, wid, lease)
  local t = tk(id)
  unqueue(id, ty)
  redis.call('HSET', t, 'ph', 'r', 'h', wid)
  redis.call('HDEL', t, 'lapsed')
  if lease ~= '' then
    redis.call('HSET', t, 'lease', lease)
    redis.call('ZADD', P .. ':leases', lease, id)
  else
    redis.call('HDEL', t, 'lease')
  end
  redis.call('RPUSH', P .. ':wc:' .. wid, id)
  changed()
end
