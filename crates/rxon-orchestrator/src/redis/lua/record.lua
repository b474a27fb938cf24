-- ARGV: prefix, task_id, reporting holder ('' unknown), list ('tp' progress, 'te'
-- events), item, max kept, now. Returns 1, or 0 for an unknown task.
local id, who = ARGV[2], ARGV[3]
if who ~= '' then confirm(who, id) end
local t = tk(id)
local ph, h = unpack(redis.call('HMGET', t, 'ph', 'h'))
if not ph then return 0 end
local max = tonumber(ARGV[6])
if max > 0 then
  local l = P .. ':' .. ARGV[4] .. ':' .. id
  redis.call('RPUSH', l, ARGV[5])
  redis.call('LTRIM', l, -max, -1)
end
local holder = holder_of(ph, h)
if holder then touch(holder, ARGV[7]) end
changed()
return 1
