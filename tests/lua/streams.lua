-- Stream routes (tests/streams_test.go): route "cmds" (stream cmds, JSON)
-- calls OnCmd, which prints every delivery as
--   entry <id> <deliveries> <n> <map>
-- and raises while meta.deliveries <= data.fail. A field change = "<map>"
-- changes to that map (after printing); stop = true ends the run. The
-- server runs until then in every map.
HOST.ExpectErrors("failing on purpose", "moved to \"cmds:dead\"")
local rt = realtime
local stop, change = false, nil
rt.Handler("OnCmd", function(stream, data, meta)
	assert(stream == "cmds", "stream " .. tostring(stream))
	assert(meta.route == "cmds" and meta.pattern == "cmds", "meta")
	print(string.format("entry %s %d %s %s", meta.id, meta.deliveries, tostring(data.n), game.GetMap()))
	if data.stop then stop = true end
	if data.change then change = data.change end
	if data.fail and meta.deliveries <= data.fail then
		error("failing on purpose, delivery " .. meta.deliveries)
	end
end)
HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 10, "connected")
	print("streams: ready " .. game.GetMap())
	while not stop do
		if change then
			HOST.ChangeLevel(change)
			while true do HOST.Yield() end
		end
		HOST.Yield()
	end
	print(string.format("streams: stopped, dead_lettered %d", rt.GetStats().dead_lettered))
end)
