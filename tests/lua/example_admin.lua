-- examples/admin-commands. EXAMPLE_PHASE=first: run until killed (the Go
-- test waits for the consumer group); otherwise wait for the command sent
-- while the server was down, its answer, and its acknowledgement.
local E = require "examplelib"

HOST.Run(function()
	E.ready()
	if os.getenv("EXAMPLE_PHASE") == "first" then
		while true do HOST.Yield() end
	end
	E.wait_chat("[admin] restart in 5 minutes")
	E.wait_sent(1)
	-- the acknowledgement goes out on the stream reader's own time: the
	-- host must not exit before Redis has it
	HOST.WaitFor(function()
		local s = realtime.GetStats().streams["admin:commands"]
		return s ~= nil and s.acked >= 1
	end, 20, "the command acknowledged")
	print("example: done")
end)
