-- Redis is killed and restarted (by the Go test) while events flow: the
-- status hooks fire, publishing goes on into the outbox, and events flow
-- again after the restart without any Lua-side reconnect code.
local T = require "testlib"
local rt = realtime

local got, connected, disconnected, reason = 0, 0, 0, nil
rt.On("flow:*", "flow", function() got = got + 1 end)
hook.Add("RealtimeConnected", "test", function() connected = connected + 1 end)
hook.Add("RealtimeDisconnected", "test", function(why) disconnected = disconnected + 1; reason = why end)

HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 5, "connected")
	timer.Create("flow", 0, 0, function() rt.Publish("flow:x", "n") end)
	HOST.WaitFor(function() return got > 20 end, 5, "events before the kill")
	print("phase:kill")
	HOST.WaitFor(function() return disconnected >= 1 end, 10, "RealtimeDisconnected")
	T.ok(rt.Status() ~= "connected", "status after the kill: " .. rt.Status())
	T.ok(type(reason) == "string" and #reason > 0, "a disconnect reason")
	print("phase:restart")
	HOST.WaitFor(function() return connected >= 2 end, 15, "RealtimeConnected after the restart")
	local before = got
	HOST.WaitFor(function() return got > before + 20 end, 10, "events after the restart")
	local st = rt.GetStats()
	T.ok(st.redis.reconnects >= 1, "reconnects counted")
	T.ok(st.redis.outages >= 1, "outages counted")
	print("restart: ok, reason: " .. reason)
end)
