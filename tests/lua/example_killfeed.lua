-- examples/kill-feed: a round of Trouble in Terrorist Town.
local E = require "examplelib"

HOST.Run(function()
	E.ready()
	local alice = FakePlayer("alice", 2, nil, "weapon_ttt_m16")
	local bob, carol, dave = FakePlayer("bob"), FakePlayer("carol"), FakePlayer("dave")
	hook.Run("TTTBeginRound")
	hook.Run("PlayerDeath", bob, FakeEntity("weapon_ttt_m16"), alice)
	hook.Run("PlayerDeath", carol, alice, alice) -- shot: the inflictor is the player
	hook.Run("PlayerDeath", dave, FakeEntity("worldspawn"), FakeEntity("worldspawn"))
	hook.Run("TTTEndRound", 2)
	E.wait_sent(4)
	print("example: done")
end)
