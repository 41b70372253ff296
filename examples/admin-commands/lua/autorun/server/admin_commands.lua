-- Admin commands from a web panel, through a Redis Stream: a command sent
-- while this server restarts is not lost, it waits in the stream.
--
-- Contract:
--   admin:commands  panel -> servers, a stream entry whose "data" field is
--                   JSON: {"cmd": "say", "text": "..."} or
--                   {"cmd": "kick", "steamid": "STEAM_0:1:1234", "reason": "..."}
--   admin:results   servers -> panel, JSON, one message per command handled:
--                   {"id": "<entry id>", "cmd": "say", "ok": true, "error": "",
--                    "server": "ttt-1", "deliveries": 1}
-- The entry is acknowledged when OnAdminCommand returns. If it raises, the
-- entry comes back about a second later (meta.deliveries counts), so make
-- commands safe to run twice; after the route's max_deliveries it is moved
-- to admin:commands:dead.

-- Autorun files load in name order, so this file may run before the glue
-- (realtime.lua). require loads the module once; a later require returns
-- it. If it is missing, the glue says which file the server needs.
if not pcall(require, "realtime") then return end

local commands = {}

function commands.say(cmd)
	PrintMessage(HUD_PRINTTALK, "[admin] " .. tostring(cmd.text))
end

function commands.kick(cmd)
	local ply = player.GetBySteamID and player.GetBySteamID(tostring(cmd.steamid))
	if not ply then return "no such player on this server" end
	ply:Kick(tostring(cmd.reason or "kicked by an admin"))
end

realtime.Handler("OnAdminCommand", function(stream, cmd, meta)
	local fn = type(cmd) == "table" and commands[cmd.cmd]
	local err = "unknown command"
	if fn then err = fn(cmd) end -- nil: done
	realtime.Publish("admin:results", {
		id = meta.id,
		cmd = type(cmd) == "table" and tostring(cmd.cmd) or "",
		ok = err == nil,
		error = err or "",
		server = realtime.GetStats().server,
		deliveries = meta.deliveries,
	})
end)
