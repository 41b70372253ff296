-- Prints every key of GetStats() two levels deep ("stats: queue.depth";
-- the fields of routes[name] as "stats: routes[].matched", of streams[name]
-- likewise; the Go test's config has a stream route), for the Go test
-- to compare with docs/API.md.
local rt = realtime
rt.On("x:*", "one", function() end)
HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 5, "connected")
	for k, v in pairs(rt.GetStats()) do
		print("stats: " .. k)
		if type(v) == "table" and (k == "routes" or k == "streams") then
			for _, route in pairs(v) do
				for f in pairs(route) do print("stats: " .. k .. "[]." .. f) end
			end
		elseif type(v) == "table" then
			for f in pairs(v) do
				if type(f) == "string" then print("stats: " .. k .. "." .. f) end
			end
		end
	end
	print("stats: done")
end)
