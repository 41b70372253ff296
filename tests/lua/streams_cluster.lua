-- Stream routes on a Redis Cluster (tests/streams_cluster_test.go): every
-- route calls OnCmd, which prints every delivery as
--   entry <stream> <id> <deliveries> <n>
-- An entry whose data has hang = true is printed, then on its first
-- delivery the main thread spins forever (the test kills the server with
-- what it holds still pending); stop = true ends the run.
local stop = false
realtime.Handler("OnCmd", function(stream, data, meta)
	print(string.format("entry %s %s %d %s", stream, meta.id, meta.deliveries, tostring(data.n)))
	if data.hang and meta.deliveries == 1 then
		print("streams: hanging")
		while true do end
	end
	if data.stop then stop = true end
end)
HOST.Run(function()
	HOST.WaitFor(realtime.IsConnected, 20, "connected")
	print("streams: ready")
	while not stop do HOST.Yield() end
	print("streams: stopped")
end)
