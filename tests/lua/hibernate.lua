-- While the server hibernates (no Think, CurTime frozen, so timers with a
-- delay do not run) events from Redis still reach their handlers, and if
-- something removes the pump timer, the glue brings it back without
-- waiting for a player to wake the server.
local T = require "testlib"
local rt = realtime
local got = 0
rt.On("h:*", "h", function() got = got + 1 end)

HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 5, "connected")
	-- Connected comes before Redis has confirmed the h:* subscription:
	-- publish until one arrives (a message published before that is not
	-- sent to this server at all).
	local deadline = HOST.Time() + 5
	repeat
		T.redis("publish", "h:0", "x")
		HOST.Sleep(0.1)
	until got > 0 or HOST.Time() > deadline
	HOST.WaitFor(function() return got > 0 end, 1, "the subscription")
	HOST.Sleep(0.2)
	got = 0 -- any later copy of the probe has arrived by now
	HOST.Hibernate(true)
	T.redis("publish", "h:1", "x")
	HOST.WaitFor(function() return got == 1 end, 5, "an event while hibernating")
	timer.Remove("realtime.pump")
	T.redis("publish", "h:2", "x")
	HOST.WaitFor(function() return got == 2 end, 5, "an event after the pump timer was removed")
	HOST.Hibernate(false)
	T.redis("publish", "h:3", "x")
	HOST.WaitFor(function() return got == 3 end, 5, "an event after waking up")
	print("hibernate: ok")
end)
