-- Cross-server chat: what a player says on one server appears in the chat
-- of every other server that runs this addon, with the server's id in front.
--
-- Channel contract: JSON on xchat:messages, one message per chat line:
--   {"server": "server-a", "name": "alice", "text": "hello"}
-- Anything else that can publish JSON (a web page, a bot) can join in.

-- Autorun files load in name order, so this file may run before the glue
-- (realtime.lua). require loads the module once; a later require returns
-- it. If it is missing, the glue says which file the server needs.
if not pcall(require, "realtime") then return end

local CHANNEL = "xchat:messages"

-- This server's [server] id, read once: GetStats builds a whole table.
local server_id
local function own_id()
	server_id = server_id or realtime.GetStats().server
	return server_id
end

-- Out: every public chat line that is not a command. No return value, so
-- the line stays as the gamemode made it.
hook.Add("PlayerSay", "xchat", function(ply, text, team_chat)
	if team_chat then return end
	local first = text:sub(1, 1)
	if first == "!" or first == "/" then return end
	realtime.Publish(CHANNEL, { server = own_id(), name = ply:Nick(), text = text })
end)

-- In: lines from the other servers. Our own lines come back too: skip them.
realtime.Handler("XChatReceive", function(channel, msg)
	if type(msg) ~= "table" or type(msg.text) ~= "string" then return end -- not JSON, or not this contract
	if msg.server == own_id() then return end
	PrintMessage(HUD_PRINTTALK, string.format("[%s] %s: %s", tostring(msg.server), tostring(msg.name), msg.text))
end)
