-- The benchmark receiver: the route(s) in realtime.toml send to handler
-- "H". BENCH_MODE=count counts events and prints "bench:done" after
-- BENCH_N of them (or when traffic stalls); BENCH_MODE=latency also records
-- each event's latency from the publisher's stamp (unix ns, the payload's
-- first field) and prints percentiles. The Go driver (tests/bench) reads
-- the "bench:" lines.
-- A flood past the queue is what some scenarios measure: its drops are
-- counted, not a failure of the run.
HOST.ExpectErrors("event queue full", "routing is not keeping up")
local mode = os.getenv("BENCH_MODE") or "count"
local want = tonumber(os.getenv("BENCH_N") or "0")
local n, last_n, last_change = 0, 0, nil
local lat, now = {}, HOST.Now

-- own: each event's time from the start of the ProcessEvents call that
-- handed it over (or from its stamp, if later) to its handler: the
-- module's own share of the latency, the rest being the wait for the pump.
local own, called = {}, 0
if mode == "latency" then
	local process = realtime.ProcessEvents
	realtime.ProcessEvents = function(...)
		called = now()
		return process(...)
	end
	realtime.Handler("H", function(_, data)
		n = n + 1
		local stamp = type(data) == "table" and data.ts or tonumber(data:match("^%d+"))
		local t = now()
		lat[n] = t - stamp / 1e9
		own[n] = t - math.max(called, stamp / 1e9)
	end)
else
	realtime.Handler("H", function() n = n + 1 end)
end

local function percentile(sorted, p)
	return sorted[math.max(1, math.ceil(#sorted * p))] * 1e6
end

HOST.Run(function()
	HOST.WaitFor(realtime.IsConnected, 10, "connected")
	print("bench:ready")
	while true do
		HOST.Yield()
		if n ~= last_n then last_n, last_change = n, HOST.Time() end
		local stalled = last_change and HOST.Time() - last_change > 3
		if (want > 0 and n >= want) or stalled then break end
	end
	local st = realtime.GetStats()
	print(string.format("bench:done count=%d queue_full=%d dispatched=%d rss_kb=%d", n, st.dropped.queue_full, st.dispatched, HOST.Info().rss_kb))
	if mode == "latency" and n > 0 then
		table.sort(lat)
		table.sort(own)
		print(string.format("bench:latency p50=%.1f p99=%.1f p999=%.1f own50=%.1f own99=%.1f own999=%.1f",
			percentile(lat, 0.5), percentile(lat, 0.99), percentile(lat, 0.999),
			percentile(own, 0.5), percentile(own, 0.99), percentile(own, 0.999)))
	end
end)
