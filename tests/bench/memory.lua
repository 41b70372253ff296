-- Memory held by queued events: the pump is stopped, the driver publishes
-- BENCH_N events, and RSS and the Go heap are compared before and after.
hook.Remove("Initialize", "realtime")
hook.Remove("Think", "realtime")
realtime.Handler("H", function() end)
local want = tonumber(os.getenv("BENCH_N"))
HOST.Run(function()
	HOST.WaitFor(realtime.IsConnected, 10, "connected")
	collectgarbage()
	HOST.Sleep(0.5)
	local before, heap0 = HOST.Info().rss_kb, realtime.GetStats().go_heap_kb
	print("bench:ready")
	HOST.WaitFor(function() return realtime.GetStats().queue.depth >= want end, 30, want .. " queued events")
	HOST.Sleep(0.5)
	local st = realtime.GetStats()
	print(string.format("bench:memory rss_before=%d rss_after=%d heap_before=%d heap_after=%d queue_bytes=%d",
		before, HOST.Info().rss_kb, heap0, st.go_heap_kb, st.queue.bytes))
end)
