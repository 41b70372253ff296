-- examples/discord-relay: the bot's line arrives, then alice speaks.
local E = require "examplelib"

HOST.Run(function()
	E.ready()
	E.wait_chat("[Discord] mod: restart in 5 minutes")
	local alice = FakePlayer("alice")
	hook.Run("PlayerSay", alice, "!rtv", false) -- a command: stays in game
	hook.Run("PlayerSay", alice, "gg", false)
	E.wait_sent(1)
	print("example: done")
end)
