-- realtime.Append from Lua (tests/append_test.go). MODE:
--   connected: once connected, appends N entries {"n":i} to the stream
--     cmds, printing "id <rt_id>" for each, then {"stop":true}; checks the
--     argument errors; exits once the outbox and the spool are empty.
--   down: Redis is not running. Appends N entries once the module has
--     reported the outage (they go to the spool), and a game event
--     PlayerDeath("v<i/100>", "a", "w") after every 100th, then changes map
--     (gmod13_close writes what the outbox holds to the spool); in the
--     next map prints "append: persisted <spool entries>" and runs until
--     killed.
--   resume: once connected, waits until the spool is empty, appends
--     {"stop":true} and exits.
local rt = realtime
local n, mode = tonumber(os.getenv("N") or "100"), os.getenv("MODE") or "connected"
local maps = HOST.Info().maps

local function sent()
	local s = rt.GetStats()
	return s.redis.outbox == 0 and s.spool.entries == 0
end

HOST.Run(function()
	if mode == "connected" then
		HOST.WaitFor(rt.IsConnected, 10, "connected")
		for i = 1, n do
			local id, err = rt.Append("cmds", { n = i })
			assert(type(id) == "string", err)
			print("id " .. id)
		end
		assert(rt.Append("cmds", '{"stop":true}'))
		local ok, err = pcall(rt.Append, "", "x")
		assert(not ok and err:find("stream is empty", 1, true), err)
		ok, err = pcall(rt.Append, "cmds", nil)
		assert(not ok and err:find("string or table expected", 1, true), err)
		HOST.WaitFor(sent, 10, "sent")
		print("append: done, appended " .. rt.GetStats().appended)
	elseif mode == "down" then
		if maps == 1 then
			HOST.WaitFor(function() return rt.Status() == "disconnected" end, 10, "disconnected")
			for i = 1, n do
				assert(rt.Append("cmds", { n = i }))
				if i % 100 == 0 then -- a game event (events.stream: to the stream player:death)
					assert(rt.PlayerDeath("v" .. (i / 100), "a", "w"))
				end
			end
			HOST.ChangeLevel("gm_map2")
			while true do HOST.Yield() end
		end
		print("append: persisted " .. rt.GetStats().spool.entries)
		while true do HOST.Yield() end
	else
		HOST.WaitFor(rt.IsConnected, 60, "connected")
		HOST.WaitFor(sent, 30, "the spool flushed")
		assert(rt.Append("cmds", '{"stop":true}'))
		HOST.WaitFor(sent, 10, "sent")
		print("append: flushed")
	end
end)
