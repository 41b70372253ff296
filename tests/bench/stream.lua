-- Stream route throughput: the route in realtime.toml reads BENCH_STREAM
-- (pre-filled with BENCH_N entries) into handler "H", which counts. Prints
-- "bench:stream" with the unix times of the first and the last entry
-- handled and of the moment the route's stats showed them all acknowledged
-- (XACK answered), and the queue_full count.
local want, stream = tonumber(os.getenv("BENCH_N")), os.getenv("BENCH_STREAM")
local n, first, last = 0, nil, nil
local now = HOST.Now
realtime.Handler("H", function()
	n = n + 1
	if n == 1 then first = now() end
	if n == want then last = now() end
end)
HOST.Run(function()
	HOST.WaitFor(realtime.IsConnected, 10, "connected")
	print("bench:ready")
	HOST.WaitFor(function() return n >= want end, 600, "the entries")
	HOST.WaitFor(function()
		local s = realtime.GetStats().streams[stream]
		return s ~= nil and s.acked >= want
	end, 120, "the acknowledgements")
	local acked = now()
	local st = realtime.GetStats()
	print(string.format("bench:stream count=%d first=%.6f last=%.6f acked=%.6f queue_full=%d",
		n, first, last, acked, st.dropped.queue_full))
end)
