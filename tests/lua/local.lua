-- No realtime.toml and no REDIS_*: local mode, where On and Publish work on
-- one server. Then realtime.Config + Connect move to Redis, Disconnect and
-- Connect(url) switch it off and on, all without blocking.
local T = require "testlib"
local rt = realtime
-- The Disconnect below drops the 3 publishes held for a server that never
-- answers: counted and logged.
HOST.ExpectErrors("discarded 3 published messages that were waiting for Redis")
local got, status, spawns = {}, {}, {}
rt.On("local:*", "l", function(ch, data) got[#got + 1] = data end)
rt.On("player:spawn", "spawns", function(ch, data) spawns[#spawns + 1] = data end, { decode = "json" })
hook.Add("RealtimeConnected", "test", function() status[#status + 1] = "up " .. rt.Status() end)
hook.Add("RealtimeDisconnected", "test", function(why) status[#status + 1] = "down " .. why end)

HOST.Run(function()
	T.eq(rt.Status(), "local", "status without config")
	T.eq(rt.GetStats().mode, "local", "mode")
	T.eq(rt.IsConnected(), true, "IsConnected() in local mode")
	T.ok(rt.Publish("local:a", "one"), "Publish in local mode")
	HOST.WaitFor(function() return #got == 1 end, 5, "local event")

	-- PlayerSpawn's position forms: a Vector, {x=, y=, z=}, {x, y, z}, three
	-- numbers; each publishes the same "pos".
	T.ok(rt.PlayerSpawn("bob", 2, Vector(1, 2, 3.5)), "PlayerSpawn(name, team, Vector)")
	T.ok(rt.PlayerSpawn("bob", 2, { x = 1, y = 2, z = 3.5 }), "PlayerSpawn(name, team, {x=, y=, z=})")
	T.ok(rt.PlayerSpawn("bob", 2, { 1, 2, 3.5 }), "PlayerSpawn(name, team, {x, y, z})")
	T.ok(rt.PlayerSpawn("bob", 2, 1, 2, 3.5), "PlayerSpawn(name, team, x, y, z)")
	HOST.WaitFor(function() return #spawns == 4 end, 5, "four spawn events")
	for i, ev in ipairs(spawns) do
		T.eq(ev.name, "bob", "spawn " .. i .. " name")
		T.eq(ev.team, 2, "spawn " .. i .. " team")
		T.eq(type(ev.pos), "table", "spawn " .. i .. " pos")
		T.eq(ev.pos.x, 1, "spawn " .. i .. " pos.x")
		T.eq(ev.pos.y, 2, "spawn " .. i .. " pos.y")
		T.eq(ev.pos.z, 3.5, "spawn " .. i .. " pos.z")
		T.eq(ev.server, rt.GetStats().server, "spawn " .. i .. " server")
		T.eq(type(ev.ts), "number", "spawn " .. i .. " ts")
	end

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
	-- While Redis does not answer, Publish fills the bounded outbox, then
	-- returns false, err: by count (outbox_events) and by bytes
	-- (outbox_bytes: payload and channel name).
	T.ok(rt.Config{ outbox_events = 3 }, "Config{outbox_events}")
	T.ok(rt.Connect(), "Connect with a small outbox")
	for i = 1, 3 do T.ok(rt.Publish("nobody:x", "m" .. i), "Publish " .. i .. " into the outbox") end
	local full, ferr = rt.Publish("nobody:x", "m4")
	T.eq(full, false, "Publish past outbox_events")
	T.ok(type(ferr) == "string" and ferr:find("outbox full", 1, true), "Publish error past outbox_events: " .. tostring(ferr))
	-- Connect hands the held publishes to the new connection; Disconnect
	-- discards them (counted as publish_failed), so that the byte bound
	-- starts empty.
	local failed = rt.GetStats().publish_failed
	rt.Disconnect()
	HOST.WaitFor(function() return rt.GetStats().publish_failed == failed + 3 end, 5, "the 3 discarded publishes counted")
	T.ok(rt.Config{ outbox_events = 10000, outbox_bytes = "64B" }, "Config{outbox_bytes}")
	T.ok(rt.Connect(), "Connect with a small byte bound")
	T.ok(rt.Publish("nobody:x", string.rep("b", 40)), "48 bytes (channel name and payload) into the outbox")
	full, ferr = rt.Publish("nobody:x", string.rep("b", 9)) -- 65 bytes
	T.eq(full, false, "Publish past outbox_bytes")
	T.ok(type(ferr) == "string" and ferr:find("outbox full", 1, true), "Publish error past outbox_bytes: " .. tostring(ferr))
	T.ok(rt.Publish("nobody:x", string.rep("b", 8)), "what still fits is taken: 64 bytes of 64")
	T.ok(rt.Config{ outbox_bytes = "8MiB" }, "Config{outbox_bytes}: the default again")
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
