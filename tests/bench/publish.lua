-- Publish throughput reaching Redis: BENCH_N publishes from Lua, as fast
-- as the outbox takes them, until Redis has acknowledged them all.
local want = tonumber(os.getenv("BENCH_N"))
HOST.Run(function()
	HOST.WaitFor(realtime.IsConnected, 10, "connected")
	local t0, sent, refused = HOST.Time(), 0, 0
	while sent < want do
		for _ = 1, 10000 do
			if sent >= want then break end
			if realtime.Publish("bench:publish", "player1 joined the server") then sent = sent + 1 else refused = refused + 1 end
		end
		HOST.Yield()
	end
	local pub = HOST.Time() - t0
	HOST.WaitFor(function() return realtime.GetStats().redis.acknowledged >= want end, 60, "acknowledgements")
	print(string.format("bench:publish n=%d seconds=%.3f publish_seconds=%.3f outbox_full=%d", want, HOST.Time() - t0, pub, refused))
end)
