-- While the server hibernates Think stops; the pump timer keeps events
-- flowing, and if something removes it, the watchdog brings it back.
local T = require "testlib"
local rt = realtime
local got, thinks = 0, 0
rt.On("h:*", "h", function() got = got + 1 end)
hook.Add("Think", "count", function() thinks = thinks + 1 end)

HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 5, "connected")
	HOST.Hibernate(true)
	local t0 = thinks
	T.redis("publish", "h:1", "x")
	HOST.WaitFor(function() return got == 1 end, 5, "an event while hibernating")
	timer.Remove("realtime.pump")
	T.redis("publish", "h:2", "x")
	HOST.WaitFor(function() return got == 2 end, 5, "an event after the pump timer was removed")
	T.ok(timer.Exists("realtime.pump"), "the watchdog re-created the pump")
	T.eq(thinks, t0, "no Think while hibernating")
	HOST.Hibernate(false)
	print("hibernate: ok")
end)
