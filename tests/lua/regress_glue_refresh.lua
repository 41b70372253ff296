-- Issue 11, defect 5: Lua autorefresh of the glue (a developer edits
-- lua/autorun/server/realtime.lua): the new copy started with
-- started = false and auto = false, Initialize never fired again, so game
-- events stopped until Reload(), and realtime.Reload was wrapped once more
-- on every refresh.
local T = require "testlib"
local rt = realtime

HOST.Run(function()
	local chat = {}
	rt.On("chat:message", "t", function(_, data) chat[#chat + 1] = data end, { json = true })
	local bob = FakePlayer("bob", 2)
	hook.Run("PlayerSay", bob, "before")
	HOST.WaitFor(function() return #chat == 1 end, 5, "the chat line before the refresh")

	local reload = rt.Reload
	include("autorun/server/realtime.lua") -- what autorefresh does
	include("autorun/server/realtime.lua")
	hook.Run("PlayerSay", bob, "after")
	HOST.WaitFor(function() return #chat == 2 end, 5, "the chat line after the refresh (auto events stopped)")
	T.eq(chat[2].message, "after", "message")

	-- Reload is not wrapped again on each refresh: the wrapper of the
	-- refreshed copy calls the module's function, not the old wrapper.
	local depth, f = 0, rt.Reload
	while f and depth < 10 do
		local inner
		for i = 1, 20 do
			local name, v = debug.getupvalue(f, i)
			if not name then break end
			if type(v) == "function" and (v == reload or name == "reload") then inner = v end
		end
		if not inner then break end
		depth, f = depth + 1, inner
	end
	T.ok(depth <= 1, "realtime.Reload is wrapped " .. depth .. " times after two refreshes")
	print("regress: ok")
end)
