-- Issue 11, defect 12: with [events] auto = true the glue published team
-- chat and chat commands ("!login hunter2") as public chat, and damage
-- that another EntityTakeDamage hook then blocked (god mode). Chat
-- commands must not be published, team chat only with a team field, and
-- damage once it was taken (PostEntityTakeDamage).
local T = require "testlib"
local rt = realtime

HOST.Run(function()
	local chat, damage = {}, {}
	rt.On("chat:message", "t", function(_, data) chat[#chat + 1] = data end, { json = true })
	rt.On("player:damage", "t", function(_, data) damage[#damage + 1] = data end, { json = true })
	local bob, alice = FakePlayer("bob", 2), FakePlayer("alice", 3)

	hook.Run("PlayerSay", bob, "!login hunter2", false)
	hook.Run("PlayerSay", bob, "/pm alice secret", false)
	hook.Run("PlayerSay", bob, "team plan", true)

	hook.Add("EntityTakeDamage", "godmode", function() return true end)
	hook.Run("EntityTakeDamage", bob, FakeDamage(25, alice))
	hook.Remove("EntityTakeDamage", "godmode")
	hook.Run("EntityTakeDamage", bob, FakeDamage(10, alice))
	hook.Run("PostEntityTakeDamage", bob, FakeDamage(10, alice), true)

	-- Published in order: once the last line is here, the others are too.
	hook.Run("PlayerSay", bob, "the end", false)
	HOST.WaitFor(function()
		for _, c in ipairs(chat) do if c.message == "the end" then return true end end
	end, 5, "the last chat line")
	for _, c in ipairs(chat) do
		T.ok(not c.message:find("hunter2", 1, true) and not c.message:find("secret", 1, true),
			"a chat command was published: " .. c.message)
		if c.message == "team plan" then T.eq(c.team, true, "team chat is published with team = true") end
	end
	T.eq(#damage, 1, "damage events (blocked damage is not published, taken damage once)")
	T.eq(damage[1].damage, 10, "the damage taken")
	print("regress: ok")
end)
