#!lua name=quantumbench
-- The same job as QUANTUM.RECOVER as a Redis Function, for comparison: mode
-- guard, claim of idle entries of other consumers, safe delete of zombies.
local function recover(keys, args)
  local stream, modekey = keys[1], keys[2]
  local group, to = args[1], args[2]
  local minidle, count, scan = tonumber(args[3]), tonumber(args[4]), tonumber(args[5])
  local zombie, limit = tonumber(args[6]), tonumber(args[7])
  if redis.call('GET', modekey) ~= 'TESTNET' then
    return redis.error_reply('MODE refused')
  end
  local claim = {stream, group, to, minidle}
  for _, e in ipairs(redis.call('XPENDING', stream, group, '-', '+', scan)) do
    if #claim - 4 >= count then break end
    if e[3] >= minidle and e[2] ~= to and e[2] ~= 'quarantine' then
      table.insert(claim, e[1])
    end
  end
  local claimed = {}
  if #claim > 4 then
    table.insert(claim, 'JUSTID')
    claimed = redis.call('XCLAIM', unpack(claim))
  end
  local deleted = {}
  for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', stream, group)) do
    local f = {}
    for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
    if #deleted < limit and f['pending'] == 0 and f['idle'] > zombie
        and f['name'] ~= to and f['name'] ~= 'quarantine' then
      redis.call('XGROUP', 'DELCONSUMER', stream, group, f['name'])
      table.insert(deleted, f['name'])
    end
  end
  return {claimed, deleted}
end
redis.register_function('quantum_recover_lua', recover)
