-- Lua autorefresh: the glue's file is run again in the same state (as GMod
-- does when it changes on a dev server). The pump goes on, once per
-- frame; game events are still published without a second Initialize;
-- realtime.Reload is not wrapped once more per refresh.
local T = require "testlib"
local rt = realtime

local stats_calls = 0
local get_stats = rt.GetStats
function rt.GetStats(...)
	stats_calls = stats_calls + 1
	return get_stats(...)
end
local pumps = {}
local process = rt.ProcessEvents
function rt.ProcessEvents(...)
	pumps[HOST.Frame()] = (pumps[HOST.Frame()] or 0) + 1
	return process(...)
end
local chat = {}
rt.On("chat:message", "chat", function(_, data) chat[#chat + 1] = data end, { decode = "json" })

HOST.Run(function()
	HOST.Yield()
	for _ = 1, 3 do include("autorun/server/realtime.lua") end

	hook.Run("PlayerSay", FakePlayer("bob"), "still here", false)
	HOST.WaitFor(function() return #chat == 1 end, 5, "a chat event after the refresh")
	T.eq(chat[1].message, "still here", "chat.message")

	local from = HOST.Frame() + 1
	for _ = 1, 20 do HOST.Yield() end
	for f = from, HOST.Frame() do T.eq(pumps[f], 1, "ProcessEvents calls in frame " .. f .. " after the refresh") end

	stats_calls = 0
	local ok, err = rt.Reload()
	T.ok(ok, "Reload: " .. tostring(err))
	T.eq(stats_calls, 1, "GetStats calls in one Reload after 3 refreshes (the glue's wrapper runs once)")
	print("refresh: ok")
end)
