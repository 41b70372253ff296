-- A Discord relay: game chat goes to a Discord channel, and the Discord
-- channel's messages appear in game chat. A bot on the other side (any
-- language with a Redis client) does the Discord part.
--
-- Channel contract, JSON:
--   discord:out  game -> bot, one per public chat line (not commands):
--     {"server": "ttt-1", "name": "alice", "steamid": "STEAM_0:0:5", "text": "gg"}
--   discord:in   bot -> game, one per Discord message:
--     {"author": "mod", "text": "restart in 5 minutes"}

-- Autorun files load in name order, so this file may run before the glue
-- (realtime.lua). require loads the module once; a later require returns
-- it. If it is missing, the glue says which file the server needs.
if not pcall(require, "realtime") then return end

local server_id -- [server] id, read once (GetStats builds a whole table)
local function own_id()
	server_id = server_id or realtime.GetStats().server
	return server_id
end

-- Game -> Discord. Commands ("!rtv", "/vote") and team chat stay in game.
hook.Add("PlayerSay", "discord_relay", function(ply, text, team_chat)
	if team_chat then return end
	local first = text:sub(1, 1)
	if first == "!" or first == "/" then return end
	realtime.Publish("discord:out", { server = own_id(), name = ply:Nick(), steamid = ply:SteamID(), text = text })
end)

-- Discord -> game. The route decodes JSON; anything else is ignored.
realtime.Handler("DiscordIn", function(channel, msg)
	if type(msg) ~= "table" or type(msg.author) ~= "string" or type(msg.text) ~= "string" then return end
	PrintMessage(HUD_PRINTTALK, "[Discord] " .. msg.author .. ": " .. msg.text)
end)
