-- The script `make demo` runs in the host next to the example addon. The
-- demo program (tests/demo/main.go) publishes with redis-cli when it sees a
-- "demo:" line; this script reports what the handlers saw.
local counts = {}
realtime.Handler("OnPlayerEvent", function(channel, data, meta)
	counts[channel] = (counts[channel] or 0) + 1
	if counts[channel] <= 3 then
		print(string.format("[demo] handler OnPlayerEvent: %s name=%s score=%s", channel, tostring(data.name), tostring(data.score)))
	end
end)
realtime.Handler("OnNews", function(channel, text)
	print("[demo] handler OnNews (added by Reload): " .. channel .. " = " .. text)
	counts.news = (counts.news or 0) + 1
end)

local function stats_line(st)
	return string.format("received %d, dispatched %d, rate_limited %d, queue depth %d, latency p50 %.0f us, p99 %.0f us (waiting for the tick: p99 %.0f us; the module's own: p99 %.0f us)",
		st.received, st.dispatched, st.rate_limited, st.queue.depth, st.latency_us.p50, st.latency_us.p99,
		st.latency_us.wait_p99, st.latency_us.module_p99)
end

HOST.Run(function()
	HOST.WaitFor(function() local s = realtime.Status() return s == "connected" or s == "local" end, 10, "a connection")
	print("[demo] status: " .. realtime.Status())
	if realtime.Status() == "local" then
		print("[demo] no Redis: local mode, publishing from Lua instead of redis-cli")
		for i = 1, 1000 do realtime.Publish("player:join", '{"name":"local' .. i .. '","score":' .. i .. '}') end
		realtime.Publish("chat:admin", "hello from local mode")
	else
		print("demo:burst")
	end
	HOST.WaitFor(function() return realtime.GetStats().routes["player-events"].matched >= 1000 end, 20, "the burst")
	HOST.Sleep(0.5)
	local st = realtime.GetStats()
	local r = st.routes["player-events"]
	print(string.format("[demo] route player-events (rate 200/s, burst 400): %d matched, %d dispatched, %d rate-limited",
		r.matched, r.dispatched, r.rate_limited))
	print("[demo] " .. stats_line(st))

	print("demo:reload") -- the demo program adds a route to realtime.toml
	HOST.WaitFor(function()
		local f = io.open(HOST.root .. "/garrysmod/cfg/realtime.toml")
		local text = f and f:read("*a") or ""
		if f then f:close() end
		return text:find('name = "news"', 1, true) ~= nil
	end, 10, "the new route in realtime.toml")
	local ok, sum = realtime.Reload()
	print("[demo] realtime.Reload() -> " .. tostring(ok) .. ", " .. (ok and sum.summary or tostring(sum)))
	if realtime.Status() == "local" then
		realtime.Publish("news:today", "routes change without reconnecting")
	else
		print("demo:news")
	end
	HOST.WaitFor(function() return (counts.news or 0) >= 1 end, 10, "the news event")
	print("[demo] " .. stats_line(realtime.GetStats()))
	if realtime.Status() ~= "local" then
		-- The demo program runs realtimectl tail and servers against this
		-- server, then publishes demo:ops-done.
		local finished = false
		realtime.On("demo:ops-done", "demo", function() finished = true end)
		HOST.Sleep(1.5) -- a heartbeat (every 1s here) written while connected
		print("demo:ops")
		HOST.WaitFor(function() return finished end, 30, "realtimectl")
	end
	print("[demo] done")
end)
