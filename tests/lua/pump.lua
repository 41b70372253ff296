-- The glue pumps exactly once per server frame: awake (Think and the
-- timers both run, in either order: the Go test runs both), while
-- hibernating (no Think, engine.TickCount() and CurTime() stand still,
-- timers with a delay freeze), and after something removed its timer.
local T = require "testlib"
local rt = realtime

local pumps = {} -- frame -> ProcessEvents calls
local process = rt.ProcessEvents
function rt.ProcessEvents(...)
	local f = HOST.Frame()
	pumps[f] = (pumps[f] or 0) + 1
	return process(...)
end
local got = 0
rt.On("pump:*", "pump", function() got = got + 1 end)

-- frames runs n frames (the task runs at the end of each) and checks that
-- each pumped once; the first may pump less when first_may_miss is set
-- (the frame that brings a removed timer back).
local function frames(n, what, first_may_miss)
	local from = HOST.Frame() + 1
	for _ = 1, n do HOST.Yield() end
	for f = from, HOST.Frame() do
		local c = pumps[f] or 0
		if not (first_may_miss and f == from and c == 0) then
			T.eq(c, 1, what .. ": ProcessEvents calls in frame " .. f .. " (" .. HOST.frame_order .. ")")
		end
	end
end

-- event checks that an event still gets through.
local function event(what)
	local want = got + 1
	T.ok(rt.Publish("pump:x", what), "Publish")
	HOST.WaitFor(function() return got == want end, 5, "an event " .. what)
end

HOST.Run(function()
	HOST.Yield() -- the first frame after Initialize
	frames(30, "awake")
	event("awake")

	HOST.Hibernate(true)
	frames(30, "hibernating")
	event("while hibernating")
	timer.Remove("realtime.pump")
	frames(30, "hibernating, pump timer removed", true)
	event("after the pump timer was removed while hibernating")

	HOST.Hibernate(false)
	frames(30, "awake again")
	timer.Remove("realtime.pump")
	frames(30, "awake, pump timer removed", true)
	event("after the pump timer was removed")
	print("pump: ok")
end)
