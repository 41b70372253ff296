-- [events] auto = true: the glue publishes game events from GMod hooks.
local T = require "testlib"
HOST.Run(function()
	HOST.WaitFor(realtime.IsConnected, 5, "connected")
	local bob, alice = FakePlayer("bob", 2, Vector(1, 2, 3)), FakePlayer("alice", 3)
	hook.Run("PlayerSpawn", bob)
	hook.Run("PlayerDeath", bob, FakeEntity("weapon_ak47"), alice)
	hook.Run("PlayerDeath", alice, FakeEntity("worldspawn"), FakeEntity("worldspawn"))
	T.eq(hook.Run("PlayerSay", bob, "hello all"), nil, "PlayerSay returns nothing (the chat line is untouched)")
	hook.Run("EntityTakeDamage", bob, FakeDamage(25, alice))
	hook.Run("EntityTakeDamage", FakeEntity("prop_physics"), FakeDamage(5, alice))
	hook.Run("TTTBeginRound")
	hook.Run("TTTEndRound", 2)
	-- Publishing is asynchronous: wait for Redis to acknowledge all 7.
	HOST.WaitFor(function() return realtime.GetStats().redis.acknowledged >= 7 end, 5, "7 events acknowledged")
	print("autoevents: published")
end)
