-- [events] auto = true: the glue publishes game events from GMod's hooks,
-- run as GMod runs them (the base gamemode's PlayerSay returns the text).
-- Team chat is marked, chat commands are not published, damage is
-- published once taken (PostEntityTakeDamage), not when merely offered.
-- Then a Reload with other chat_skip_prefixes takes effect at once.
local T = require "testlib"

local cfg = HOST.root .. "/garrysmod/cfg/realtime.toml"
local function append(text)
	local f = assert(io.open(cfg, "a"))
	f:write(text)
	f:close()
end

HOST.Run(function()
	HOST.WaitFor(realtime.IsConnected, 5, "connected")
	local bob, alice = FakePlayer("bob", 2, Vector(1, 2, 3)), FakePlayer("alice", 3, nil, "weapon_pistol")
	hook.Run("PlayerSpawn", bob)
	hook.Run("PlayerDeath", bob, FakeEntity("weapon_ak47"), alice)
	hook.Run("PlayerDeath", alice, FakeEntity("worldspawn"), FakeEntity("worldspawn"))
	hook.Run("PlayerDeath", bob, alice, alice) -- shot: the inflictor is the player, the weapon theirs
	T.eq(hook.Run("PlayerSay", bob, "hello all", false), "hello all", "PlayerSay leaves the line as the gamemode made it")
	T.eq(hook.Run("PlayerSay", alice, "push B", true), "push B", "team PlayerSay")
	T.eq(hook.Run("PlayerSay", bob, "!login hunter2", false), "!login hunter2", "a chat command stays the gamemode's")
	hook.Run("PlayerSay", bob, "/vote map", false)
	hook.Run("EntityTakeDamage", bob, FakeDamage(50, alice)) -- offered, not yet taken
	hook.Run("PostEntityTakeDamage", bob, FakeDamage(99, alice), false) -- blocked (god mode, armour)
	hook.Run("PostEntityTakeDamage", bob, FakeDamage(25, alice), true)
	hook.Run("PostEntityTakeDamage", FakeEntity("prop_physics"), FakeDamage(5, alice), true)
	hook.Run("TTTBeginRound")
	hook.Run("TTTEndRound", 2)
	-- Publishing is asynchronous: wait for Redis to acknowledge all 9.
	HOST.WaitFor(function() return realtime.GetStats().redis.acknowledged >= 9 end, 5, "9 events acknowledged")
	T.eq(realtime.GetStats().published, 9, "events published (no command, no blocked damage)")

	append('chat_skip_prefixes = ["#"]\n') -- the file ends in [events]
	local ok, err = realtime.Reload()
	T.ok(ok, "Reload: " .. tostring(err))
	T.eq(realtime.GetStats().events.chat_skip_prefixes[1], "#", "GetStats().events.chat_skip_prefixes")
	hook.Run("PlayerSay", bob, "#admin secret", false)
	hook.Run("PlayerSay", bob, "!rtv", false)
	HOST.WaitFor(function() return realtime.GetStats().redis.acknowledged >= 10 end, 5, "10 events acknowledged")
	T.eq(realtime.GetStats().published, 10, "events published after the Reload")
	print("autoevents: published")
end)
