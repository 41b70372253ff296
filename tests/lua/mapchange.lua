-- Runs in every map: registers handlers, waits for traffic (published by
-- the Go test from phase:publish on), records figures, changes map. After MAPS
-- maps it asks the Go test to stop publishing (phase:stop), learns how many
-- messages Redis delivered to this server (control:delivered), and checks
-- that every one reached a handler and that nothing leaked.
local T = require "testlib"
local rt = realtime
local maps, target = HOST.Info().maps, tonumber(os.getenv("MAPS") or "200")
-- traffic:* sees every message; the config route "named" sees those on
-- traffic:named too (overlapping routes each get the event).
local got, named, delivered, delivered_named = 0, 0, nil, nil
rt.On("traffic:*", "traffic", function() got = got + 1 end)
rt.Handler("OnNamed", function() named = named + 1 end)
rt.On("control:delivered", "control", function(_, data)
	local all, n = data:match("^(%d+) (%d+)$")
	delivered, delivered_named = tonumber(all), tonumber(n)
end)

-- The host unloaded the module at the map change (dlclose, FreeLibrary),
-- as GMod does; pinned (-z nodelete, GetModuleHandleEx's PIN flag), it is
-- still mapped, its goroutines' code with it.
if maps > 1 then T.eq(HOST.Info().resident, 1, "modules still mapped after the host unloaded them") end

HOST.Run(function()
	if maps == 1 then
		-- Traffic starts once the handlers are registered: a message that
		-- came before would reach the named route and not traffic:*.
		HOST.WaitFor(rt.IsConnected, 10, "connected")
		print("phase:publish")
	end
	HOST.WaitFor(function() return got > 0 end, 10, "traffic in map " .. maps)
	local before = tonumber(HOST.Get("handled") or "0")
	local before_named = tonumber(HOST.Get("named") or "0")
	if maps == math.min(20, target) then
		local st, info = rt.GetStats(), HOST.Info()
		local registry, fns = T.registry()
		HOST.Set("base", string.format("%d %d %d %d", info.rss_kb, st.goroutines, registry, fns))
	end
	if maps < target then
		-- The change happens right after this frame: nothing is handled in
		-- this state after this line.
		HOST.Set("handled", tostring(before + got))
		HOST.Set("named", tostring(before_named + named))
		HOST.ChangeLevel("gm_map" .. (maps + 1))
		while true do HOST.Yield() end
	end
	local st = rt.GetStats()
	local info = HOST.Info()
	local registry, fns = T.registry()
	local rss, gor, reg, rfn = HOST.Get("base"):match("(%d+) (%d+) (%d+) (%d+)")
	print(string.format("maps %d: rss %d KiB (map 20: %d), goroutines %d (%d), registry %d (%d), functions %d (%d)",
		maps, info.rss_kb, rss, st.goroutines, gor, registry, reg, fns, rfn))
	T.eq(fns, tonumber(rfn), "functions in the registry")
	T.eq(registry, tonumber(reg), "registry entries")
	T.ok(st.goroutines <= tonumber(gor) + 2, "goroutines flat")
	-- Under ASan (make sanitize) the RSS is mostly the sanitizer's
	-- quarantine and shadow memory, and ASan itself checks the memory.
	if not os.getenv("ASAN_OPTIONS") then
		T.ok(info.rss_kb - tonumber(rss) < 8 * 1024, "RSS grew by less than 8 MiB")
	end

	-- Nothing lost: every message Redis delivered reached a handler.
	print("phase:stop")
	HOST.WaitFor(function() return delivered ~= nil end, 20, "the publisher's count")
	local deadline = HOST.Time() + 20
	while (before + got < delivered or before_named + named < delivered_named) and HOST.Time() < deadline do
		HOST.Yield()
	end
	st = rt.GetStats()
	local dropped = {}
	for k, v in pairs(st.dropped) do dropped[#dropped + 1] = k .. "=" .. v end
	local detail = string.format(" (delivered %d, %d on traffic:named; handled by traffic:* %d, by OnNamed %d;"
		.. " module: received %d, queued %d, dispatched %d, waiting %d, dropped %s; routes matched: traffic %d, named %d)",
		delivered, delivered_named, before + got, before_named + named,
		st.received, st.queued, st.dispatched, st.queue.depth, table.concat(dropped, " "),
		st.routes["traffic (traffic:*)"].matched, st.routes.named.matched)
	T.ok(delivered > maps, "messages delivered over the run: " .. delivered)
	T.eq(before + got, delivered, "traffic:* handler calls over all maps" .. detail)
	T.eq(before_named + named, delivered_named, "OnNamed calls over all maps" .. detail)
	T.eq(rt.GetStats().dropped.no_handler, 0, "no_handler drops")
	T.eq(rt.GetStats().dropped.queue_full, 0, "queue_full drops")
	print(string.format("mapchange: ok, %d messages handled over %d maps", delivered, maps))
end)
