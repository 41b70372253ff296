-- [dispatch] max_per_frame (3 in the Go test's config, with the largest
-- budget, 100 ms): ProcessEvents() dispatches at most that many events per
-- call, ProcessEvents(max) overrides it, and Reload applies a new value.
-- The script pumps by hand before Initialize: no frame pumps for it. The
-- budget can end a call early on a loaded machine, never late: every check
-- is "at most", and "exactly" is asked of some call out of several.
local T = require "testlib"
local rt = realtime
local got = 0
rt.On("mpf:*", "mpf", function() got = got + 1 end)
T.depth(1)
T.drain() -- RealtimeConnected (local)

local function queue(n)
	for i = 1, n do T.ok(rt.Publish("mpf:" .. i, "x"), "Publish") end
	T.depth(n)
end

-- pump calls ProcessEvents(max) until the queue is empty; it returns the
-- largest count a call returned.
local function pump(max, limit)
	local most, before = 0, got
	repeat
		local n = rt.ProcessEvents(max)
		T.ok(n <= limit, "ProcessEvents(" .. tostring(max) .. ") dispatched " .. n .. ", over " .. limit)
		if n > most then most = n end
	until rt.GetStats().queue.depth == 0
	return most, got - before
end

-- The configured bound: no call over 3; a call reaches it.
local reached = false
for _ = 1, 5 do
	queue(10)
	local most, n = pump(nil, 3)
	T.eq(n, 10, "every event dispatched, three at most per call")
	if most == 3 then reached = true break end
end
T.ok(reached, "a ProcessEvents() call dispatched max_per_frame events")

-- An explicit max wins over max_per_frame.
reached = false
for _ = 1, 5 do
	queue(7)
	local most = pump(7, 7)
	if most == 7 then reached = true break end
end
T.ok(reached, "ProcessEvents(7) dispatched 7 events with max_per_frame = 3")

-- Reload applies a new max_per_frame.
local cfg = HOST.root .. "/garrysmod/cfg/realtime.toml"
local f = assert(io.open(cfg, "w"))
f:write('[dispatch]\nmax_per_frame = 2\nbudget = "100ms"\n')
f:close()
T.ok(rt.Reload(), "Reload")
reached = false
for _ = 1, 5 do
	queue(6)
	local most = pump(nil, 2)
	if most == 2 then reached = true break end
end
T.ok(reached, "a ProcessEvents() call dispatched the reloaded max_per_frame")
HOST.Run(function() print("maxperframe: ok") end)
