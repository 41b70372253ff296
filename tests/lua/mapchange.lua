-- Runs in every map: registers handlers, waits for traffic (published by
-- the Go test the whole time), records figures, changes map. After
-- MAPS maps it checks that nothing leaked and nothing was lost.
local T = require "testlib"
local rt = realtime
local maps, target = HOST.Info().maps, tonumber(os.getenv("MAPS") or "200")
local got = 0
rt.On("traffic:*", "traffic", function() got = got + 1 end)
rt.Handler("OnNamed", function() got = got + 1 end)

HOST.Run(function()
	HOST.WaitFor(function() return got > 0 end, 10, "traffic in map " .. maps)
	HOST.Set("handled", tostring(tonumber(HOST.Get("handled") or "0") + got))
	local st = rt.GetStats()
	local info = HOST.Info()
	local registry, fns = T.registry()
	if maps == 20 then
		HOST.Set("base", string.format("%d %d %d %d", info.rss_kb, st.goroutines, registry, fns))
	end
	if maps == target then
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
		-- Nothing lost: every event the router queued was handled or is waiting.
		T.eq(st.dropped.no_handler, 0, "no_handler drops")
		T.eq(st.dropped.queue_full, 0, "queue_full drops")
		local handled = tonumber(HOST.Get("handled"))
		T.eq(handled, st.dispatched, "handler calls over all maps")
		T.eq(st.queued, st.dispatched + st.queue.depth, "queued events all dispatched or waiting")
		print(string.format("mapchange: ok, %d events handled over %d maps", handled, maps))
		return
	end
	HOST.ChangeLevel("gm_map" .. (maps + 1))
	while true do HOST.Yield() end
end)
