-- Runs a connected server until a message on "stop", for the heartbeat
-- test: the Go test reads the server's heartbeat with realtimectl servers.
-- Both routes of its realtime.toml call OnHB: "hb" (hb:*, rate-limited on
-- one server) and one for the channel "stop".
local rt = realtime
local stop = false
rt.Handler("OnHB", function(channel) if channel == "stop" then stop = true end end)
HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 10, "connected")
	print("heartbeat: ready")
	HOST.WaitFor(function() return stop end, 60, "stop")
	print("heartbeat: stopped")
end)
