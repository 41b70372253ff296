-- Config routes from realtime.toml (pattern with exclude, channel, named
-- handler, hook: handler, JSON decode, rate limit, a missing handler), then
-- Reload: routes added and removed live, and a broken file changing nothing.
local T = require "testlib"
local rt = realtime
-- Logged through ErrorNoHalt: the invalid JSON and the missing handler.
HOST.ExpectErrors('payload on "player:bad" delivered raw: invalid JSON', 'no handler "Missing" is registered')

local players, spam, fresh, admin = {}, 0, 0, nil
rt.Handler("OnPlayer", function(ch, data) players[#players + 1] = { ch = ch, data = data } end)
rt.Handler("OnSpam", function() spam = spam + 1 end)
rt.Handler("OnNew", function() fresh = fresh + 1 end)
hook.Add("RealtimeAdminChat", "test", function(ch, data, meta) admin = { ch = ch, data = data, route = meta.route } end)

local cfg = HOST.root .. "/garrysmod/cfg/realtime.toml"
local function write(text)
	local f = assert(io.open(cfg, "w"))
	f:write(text)
	f:close()
end
local function read()
	local f = assert(io.open(cfg))
	local s = f:read("*a")
	f:close()
	return s
end

HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 5, "connected")
	T.redis("publish", "player:join", '{"name":"bob","n":[1,2]}')
	T.redis("publish", "player:debug:x", "{}")
	T.redis("publish", "player:bad", "{not json")
	T.redis("publish", "admin:chat", "hello")
	for i = 1, 3 do rt.Publish("nobody", tostring(i)) end
	local spam_start = HOST.Time()
	for i = 1, 50 do rt.Publish("spam:x", tostring(i)) end
	HOST.WaitFor(function()
		local st = rt.GetStats().routes
		return #players == 2 and admin and st.limited.matched == 50 and st.orphan.no_handler == 3
	end, 5, "config route events")
	-- The bucket refills at 5/s while the 50 arrive: a slow host (Wine)
	-- spreads them over longer.
	local spam_max = 5 + math.ceil(5 * (HOST.Time() - spam_start)) + 1
	HOST.Sleep(0.2)
	T.eq(#players, 2, "player events (player:debug:* excluded)")
	T.eq(players[1].ch, "player:join", "first player channel")
	T.eq(players[1].data.name, "bob", "JSON decoded to a table")
	T.eq(players[1].data.n[2], 2, "JSON array")
	T.eq(players[2].data, "{not json", "invalid JSON delivered raw")
	T.eq(admin.ch, "admin:chat", "hook route channel")
	T.eq(admin.data, "hello", "hook route data")
	T.eq(admin.route, "admin", "hook route meta.route")
	local st = rt.GetStats()
	T.ok(spam >= 5 and spam <= math.max(8, spam_max), "rate-limited route passed " .. spam .. " of 50 (5/s, burst 5), at most " .. math.max(8, spam_max))
	T.eq(st.routes.limited.rate_limited, 50 - spam, "rate_limited count")
	T.eq(st.rate_limited, 50 - spam, "global rate_limited")
	T.eq(st.routes.players.decode_errors, 1, "decode_errors")
	T.eq(st.dropped.no_handler, 3, "dropped.no_handler")
	local reconnects = st.redis.reconnects

	-- Reload: add a route, remove one, without reconnecting.
	local original = read()
	write(original:gsub('%[%[routes%]%]\nname = "orphan".-\n\n', "") ..
		'[[routes]]\nname = "added"\nchannel = "new:chan"\nhandler = "OnNew"\n')
	local ok, sum = rt.Reload()
	T.ok(ok, "Reload: " .. tostring(sum))
	T.eq(sum.added[1], "added", "summary.added")
	T.eq(sum.removed[1], "orphan", "summary.removed")
	T.eq(#sum.changed, 0, "summary.changed")
	T.eq(sum.reconnected, false, "summary.reconnected")
	rt.Publish("new:chan", "x")
	HOST.WaitFor(function() return fresh == 1 end, 5, "event on the added route")
	T.eq(rt.GetStats().routes.orphan, nil, "removed route gone from stats")

	-- A broken file is rejected with its errors, and nothing changes.
	local good = read()
	write(good .. '\n[[routes]]\nname = "typo"\npattern = "x:*"\nratee = "5/s"\n')
	local ok2, err = rt.Reload()
	T.eq(ok2, false, "Reload of a broken file")
	T.ok(err:find("realtime.toml", 1, true) and err:find("ratee", 1, true) and err:find('did you mean "rate"', 1, true), "error names file and key: " .. err)
	rt.Publish("new:chan", "y")
	HOST.WaitFor(function() return fresh == 2 end, 5, "routes unchanged after a failed Reload")
	T.eq(rt.GetStats().routes.typo, nil, "no route from the broken file")
	T.eq(rt.GetStats().redis.reconnects, reconnects, "no reconnect")
	print("config: ok")
end)
