-- Frame time of the pump (issue 19): every ProcessEvents call the glue
-- makes (one per server frame) is timed, and beside it, in the same frame,
-- a call of HOST.Nop (an empty C function: the reference, what the VM's
-- scheduling alone does to a call that does nothing). Handler "H" counts.
-- BENCH_N: events to wait for (0: measure BENCH_IDLE seconds instead).
-- BENCH_SPIN=N: the reference of a burst: for N frames, instead of
-- ProcessEvents, a Lua loop that calls an empty handler under pcall for the
-- whole budget (2 ms), timed the same way, while the module takes in the
-- same burst: what the OS does to a pump that keeps to its budget.
-- Prints "bench:ready", then "bench:frames ..." with both distributions
-- (µs) and the time from the first event handled to the last.
HOST.ExpectErrors("event queue full")
local want = tonumber(os.getenv("BENCH_N") or "0")
local idle = tonumber(os.getenv("BENCH_IDLE") or "5")
local clock, nop, rt, preempted = HOST.Time, HOST.Nop, realtime, HOST.Preemptions
local n, first, last = 0, nil, nil
realtime.Handler("H", function()
	n = n + 1
	if not first then first = clock() end
	last = clock()
end)

-- calm: the calls the kernel did not interrupt to run another thread
-- (HOST.Preemptions counts involuntary context switches).
local mod, ref, calm, measuring = {}, {}, {}, false
local pump = rt.ProcessEvents
local spin = tonumber(os.getenv("BENCH_SPIN") or "0")
if spin > 0 then
	local function h() end
	pump = function()
		local t0 = clock()
		while clock() - t0 < 0.002 do pcall(h) end
		return 0
	end
end
rt.ProcessEvents = function(...)
	if not measuring then return pump(...) end
	local t0 = clock()
	nop()
	local c0 = preempted()
	local t1 = clock()
	local r = pump(...)
	local t2 = clock()
	ref[#ref + 1] = t1 - t0
	mod[#mod + 1] = t2 - t1
	if preempted() == c0 then calm[#calm + 1] = t2 - t1 end
	return r
end

local function dist(t)
	table.sort(t)
	local function at(p) return t[math.max(1, math.ceil(#t * p))] * 1e6 end
	local over = 0
	for _, v in ipairs(t) do if v > 0.003 then over = over + 1 end end
	return at(0.5), at(0.99), at(0.999), t[#t] * 1e6, over
end

HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 10, "connected")
	rt.GetStats() -- starts the module's own frame figures afresh
	measuring = true
	print("bench:ready")
	local t0, last_n, last_change = clock(), 0, clock()
	while true do
		HOST.Yield()
		if n ~= last_n then last_n, last_change = n, clock() end
		if spin > 0 then
			if #mod >= spin then break end
		elseif want > 0 and (n >= want or clock() - last_change > 3) then break end
		if want == 0 and clock() - t0 > idle then break end
	end
	measuring = false
	local st = rt.GetStats()
	local m50, m99, m999, mmax, mover = dist(mod)
	local r50, r99, r999, rmax, rover = dist(ref)
	local _, c99, _, cmax, cover = dist(#calm > 0 and calm or {0})
	print(string.format("bench:frames n=%d frames=%d drain=%.3f queue_full=%d " ..
		"p50=%.1f p99=%.1f p999=%.1f max=%.1f over3ms=%d " ..
		"ref_p50=%.1f ref_p99=%.1f ref_p999=%.1f ref_max=%.1f ref_over3ms=%d " ..
		"own_p99=%d own_max=%d own_over=%d " ..
		"calm=%d calm_p99=%.1f calm_max=%.1f calm_over3ms=%d",
		n, #mod, first and last - first or 0, st.dropped.queue_full,
		m50, m99, m999, mmax, mover, r50, r99, r999, rmax, rover,
		st.frames.p99_us, st.frames.max_us, st.frames.over_budget,
		#calm, c99, cmax, cover))
end)
