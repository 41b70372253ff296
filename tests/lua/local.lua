-- No realtime.toml and no REDIS_*: local mode, where On and Publish work on
-- one server. Then realtime.Config + Connect move to Redis, Disconnect and
-- Connect(url) switch it off and on, all without blocking.
local T = require "testlib"
local rt = realtime
local got, status = {}, {}
rt.On("local:*", "l", function(ch, data) got[#got + 1] = data end)
hook.Add("RealtimeConnected", "test", function() status[#status + 1] = "up " .. rt.Status() end)
hook.Add("RealtimeDisconnected", "test", function(why) status[#status + 1] = "down " .. why end)

HOST.Run(function()
	T.eq(rt.Status(), "local", "status without config")
	T.eq(rt.GetStats().mode, "local", "mode")
	T.ok(rt.Publish("local:a", "one"), "Publish in local mode")
	HOST.WaitFor(function() return #got == 1 end, 5, "local event")

	local ok, err = rt.Config("127.0.0.1", "not a port")
	T.eq(ok, false, "Config with a bad port")
	T.ok(err:find("realtime.Config", 1, true) and err:find("port", 1, true), "Config error names the source and key: " .. err)
	-- A server that takes the connection and never answers, with timeouts
	-- longer than the host may run: a Connect that waited on the network
	-- would never come back, and the host would be killed.
	T.ok(rt.Config{ host = "127.0.0.1", port = tonumber(os.getenv("TEST_SILENT_PORT")), timeout = 600, read_timeout = 600 },
		"Config{...} with long timeouts")
	T.ok(rt.Connect(), "Connect to a server that never answers")
	T.ok(not rt.IsConnected(), "not connected to a server that never answers")
	T.ok(rt.Config{ read_timeout = 3 }, "Config{read_timeout}")
	T.ok(rt.Config("127.0.0.1", tonumber(os.getenv("TEST_REDIS_PORT")), nil, 2), "Config(host, port, nil, timeout)")
	T.ok(rt.Connect(), "Connect")
	HOST.WaitFor(function() return rt.Status() == "connected" end, 5, "connected to Redis")
	T.eq(rt.GetStats().mode, "redis", "mode after Connect")
	T.ok(rt.Publish("local:b", "two"), "Publish through Redis")
	HOST.WaitFor(function() return #got == 2 end, 5, "event through Redis")

	T.ok(rt.Disconnect(), "Disconnect")
	T.eq(rt.Status(), "disconnected", "status after Disconnect")
	local ok2, err2 = rt.Publish("local:c", "three")
	T.eq(ok2, false, "Publish while disconnected")
	T.ok(err2:find("not connected", 1, true), "Publish error: " .. tostring(err2))
	HOST.WaitFor(function() return status[#status] == "down realtime.Disconnect()" end, 5, "RealtimeDisconnected")

	T.ok(rt.Connect("redis://127.0.0.1:" .. os.getenv("TEST_REDIS_PORT")), "Connect(url)")
	HOST.WaitFor(rt.IsConnected, 5, "connected again")
	T.ok(rt.Publish("local:d", "four"), "Publish after reconnecting")
	HOST.WaitFor(function() return #got == 3 end, 5, "event after reconnecting")
	local bad, berr = rt.Connect("http://nowhere")
	T.eq(bad, false, "Connect with a bad URL")
	T.ok(berr:find("url", 1, true), "Connect error: " .. berr)
	T.ok(rt.IsConnected(), "a failed Connect keeps the connection")
	print("local: ok " .. table.concat(status, ", "))
end)
