-- The binary module is missing: the glue says which file it expected, and
-- the server goes on without realtime.
HOST.ExpectErrors("[realtime] could not load the binary module")
HOST.Run(function()
	assert(realtime == nil, "realtime loaded without its binary")
	HOST.Sleep(0.1)
	print("missing: ok")
end)
