-- Soak: the driver publishes 1,000 events/s for BENCH_SECONDS; every 10 s
-- this prints RSS, goroutines, registry size and events handled.
local n = 0
realtime.Handler("H", function() n = n + 1 end)
local function registry()
	local c = 0
	for _ in pairs(debug.getregistry()) do c = c + 1 end
	return c
end
HOST.Run(function()
	HOST.WaitFor(realtime.IsConnected, 10, "connected")
	print("bench:ready")
	local t0, seconds = HOST.Time(), tonumber(os.getenv("BENCH_SECONDS"))
	local next_sample = 0
	while HOST.Time() - t0 < seconds + 2 do
		if HOST.Time() - t0 >= next_sample then
			local st = realtime.GetStats()
			print(string.format("bench:sample t=%.1f rss_kb=%d goroutines=%d registry=%d handled=%d heap_kb=%d",
				HOST.Time() - t0, HOST.Info().rss_kb, st.goroutines, registry(), n, st.go_heap_kb))
			next_sample = next_sample + 10
		end
		HOST.Yield()
	end
	print(string.format("bench:done count=%d", n))
end)
