-- examples/admin-commands. EXAMPLE_PHASE=first: run until killed (the Go
-- test waits for the consumer group); otherwise wait for the command sent
-- while the server was down, and its answer.
local E = require "examplelib"

HOST.Run(function()
	E.ready()
	if os.getenv("EXAMPLE_PHASE") == "first" then
		while true do HOST.Yield() end
	end
	E.wait_chat("[admin] restart in 5 minutes")
	E.wait_sent(1)
	print("example: done")
end)
