-- examples/server-status: a report at connect, another for the ping.
local E = require "examplelib"

HOST.Run(function()
	E.ready()
	E.wait_dispatched("status-ping", 1)
	E.wait_sent(2)
	print("example: done")
end)
