-- Attack: a map change while events of a batch wait in the shim
-- (rt_events keeps them across gmod13_close/open). Map 1 handles the
-- events slowly (one per ProcessEvents: the handler outlasts the budget)
-- and changes map; map 2 registers the same On id again (MAPBATCH=keep)
-- or nothing (MAPBATCH=drop). Every event must be handled exactly once, or
-- counted as no_handler.
local T = require "testlib"
local rt = realtime
local N = 40
local mode = os.getenv("MAPBATCH") or "keep"
local map = HOST.Info().maps
HOST.ExpectErrors("was removed while events for it waited")


local seen = HOST.Get("seen") or ""
local function handler(_, data)
	seen = seen .. data .. ","
	HOST.Set("seen", seen)
	local t = HOST.Time() + 0.003 -- more than the 2 ms budget
	while HOST.Time() < t do end
end

if map == 1 then
	T.depth(1)
	rt.ProcessEvents() -- RealtimeConnected (local)
	rt.On("mc", "mc", handler)
	for i = 1, N do rt.Publish("mc", tostring(i)) end
	T.depth(N)
	T.eq(rt.ProcessEvents(), 1, "events in the first call") -- the rest of the batch waits in the shim
	HOST.Set("no_handler", tostring(rt.GetStats().dropped.no_handler))
	HOST.ChangeLevel("gm_map2")
	return
end

if mode == "keep" then rt.On("mc", "mc", handler) end
HOST.Run(function()
	local before = tonumber(HOST.Get("no_handler"))
	local function count()
		local n = 0
		for _ in seen:gmatch("(%d+),") do n = n + 1 end
		return n
	end
	local deadline = HOST.Time() + 20
	while count() + rt.GetStats().dropped.no_handler - before < N and HOST.Time() < deadline do HOST.Yield() end
	local got = {}
	for v in seen:gmatch("(%d+),") do
		T.ok(not got[v], "event " .. v .. " delivered twice (seen: " .. seen .. ")")
		got[v] = true
	end
	local no_handler = rt.GetStats().dropped.no_handler - before
	T.eq(count() + no_handler, N, "events handled (" .. count() .. ") + no_handler (" .. no_handler .. ")")
	if mode == "keep" then T.eq(no_handler, 0, "no_handler with the handler registered again") end
	rt.Off("mc")
	print("attack_mapbatch: ok")
end)
