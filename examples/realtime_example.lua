-- An example addon for gmsv_realtime: copy it to
-- garrysmod/lua/autorun/server/ next to realtime.lua. It goes with the
-- routes of realtime.toml.example.

-- Config route "player-events" (pattern player:*, JSON): a named handler.
realtime.Handler("OnPlayerEvent", function(channel, data, meta)
	print(string.format("[example] %s: %s (route %s)", channel, data.name or "?", meta.route))
end)

-- Config route "admin-chat" (channel chat:admin, handler = "hook:RealtimeAdminChat").
hook.Add("RealtimeAdminChat", "example", function(channel, message)
	print("[example] admin says: " .. message)
end)

-- A handler registered from Lua; the id "example" keeps Lua auto-refresh
-- from stacking a second copy.
realtime.On("server:*:announce", "example", function(channel, text)
	print("[example] announcement on " .. channel .. ": " .. text)
end)

hook.Add("RealtimeConnected", "example", function()
	realtime.Publish("server:" .. realtime.GetStats().server .. ":announce", "this server is up on " .. game.GetMap())
end)

-- Game events out, for a dashboard: the chat, as JSON.
hook.Add("PlayerSay", "example", function(ply, text)
	realtime.ChatMessage(ply:Nick(), text)
end)
