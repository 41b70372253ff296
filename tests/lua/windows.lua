-- The Windows DLL's own ways (TestWindows, under Wine): the glue sees
-- system.IsWindows(); the config comes from $REALTIME_CONFIG, a path with
-- backslashes, and the Redis URL from the .env beside it; the module stays
-- mapped after the host's FreeLibrary at the map change and opens again in
-- the next map.
local T = require "testlib"
local info = HOST.Info()
T.ok(system.IsWindows() and not system.IsLinux(), "system.IsWindows() on " .. info.suffix)
T.eq(type(realtime), "table", "the module opened in map " .. info.maps)

HOST.Run(function()
	-- Connected to Redis (the URL from the .env): IsConnected() alone is true
	-- in local mode too, which a .env not found would leave it in.
	HOST.WaitFor(function() return realtime.Status() == "connected" end, 10, "connected to Redis in map " .. info.maps)
	T.eq(realtime.GetStats().server, "win-1", "server id from the TOML")
	if info.maps == 1 then
		HOST.ChangeLevel("gm_flatgrass")
		while true do HOST.Yield() end
	end
	T.eq(info.resident, 1, "modules still mapped after FreeLibrary")
	print("windows: ok")
	HOST.Exit(0)
end)
