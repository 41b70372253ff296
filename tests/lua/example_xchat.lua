-- examples/cross-server-chat on server EXAMPLE_ROLE "a" or "b": a says
-- something once the web's line arrived; b waits for a's line.
local E = require "examplelib"

HOST.Run(function()
	E.ready()
	E.wait_chat("[web] admin: hello everyone")
	if os.getenv("EXAMPLE_ROLE") == "a" then
		local alice = FakePlayer("alice")
		-- Not relayed: a command, a slash command, team chat.
		hook.Run("PlayerSay", alice, "!rtv", false)
		hook.Run("PlayerSay", alice, "/vote", false)
		hook.Run("PlayerSay", alice, "rush B", true)
		hook.Run("PlayerSay", alice, "hello from A", false)
		E.wait_dispatched("xchat", 2) -- the web's line, and its own coming back
	else
		E.wait_chat("[server-a] alice: hello from A")
	end
	print("example: done")
end)
