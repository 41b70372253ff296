-- Runs for BENCH_SECONDS doing nothing but the server's ticks (and, with
-- routes, whatever the driver publishes), so the driver can read the
-- process's CPU time.
realtime.Handler("H", function() end)
for i = 1, 100 do realtime.Handler("H" .. i, function() end) end
HOST.Run(function()
	HOST.WaitFor(realtime.IsConnected, 10, "connected")
	print("bench:ready")
	HOST.Sleep(tonumber(os.getenv("BENCH_SECONDS")))
	local st = realtime.GetStats()
	print(string.format("bench:done dispatched=%d", st.dispatched))
end)
