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
