-- A server-status broadcaster: each server publishes a short report every
-- 30 seconds, when it connects to Redis, and when a dashboard asks.
--
-- Channel contract, JSON:
--   servers:status:<id>  server -> dashboards, the report:
--     {"server": "ttt-1", "map": "gm_construct", "gamemode": "terrortown",
--      "players": 5, "max_players": 16, "uptime_s": 3600}
--   servers:ping         dashboard -> servers, any payload: report now.
-- (realtimectl servers reads the module's own heartbeats, which hold the
-- module's figures; this report holds the game's.)

-- Autorun files load in name order, so this file may run before the glue
-- (realtime.lua). require loads the module once; a later require returns
-- it. If it is missing, the glue says which file the server needs.
if not pcall(require, "realtime") then return end

local INTERVAL = 30 -- seconds

local function report()
	local id = realtime.GetStats().server
	realtime.Publish("servers:status:" .. id, {
		server = id,
		map = game.GetMap(),
		gamemode = engine.ActiveGamemode(),
		players = player.GetCount(),
		max_players = game.MaxPlayers(),
		uptime_s = math.floor(CurTime()),
	})
end

-- A timer with a delay freezes while the server hibernates (no players):
-- an empty server reports when it connects and when asked.
timer.Create("server_status", INTERVAL, 0, report)
hook.Add("RealtimeConnected", "server_status", report)
hook.Add("ServerStatusPing", "server_status", function(channel, data, meta)
	report()
end)
