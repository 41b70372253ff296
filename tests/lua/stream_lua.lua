-- realtime.Stream (tests/streams_lua_test.go): stream cmds is read by a
-- handler registered from Lua, with id "cmd", in every map. It prints
-- every delivery as
--   entry <id> <deliveries> <n> <map>
-- and raises while meta.deliveries <= data.fail. Fields of an entry's JSON
-- data: off = true removes the route (realtime.Off) once handled, and a
-- message "on" on channel ctl registers it again; reload = true calls
-- realtime.Reload(); change = "<map>" changes to that map; stop = true ends
-- the run.
HOST.ExpectErrors("failing on purpose", "moved to \"cmds:dead\"")
local rt = realtime
local stop, change = false, nil
local opts = { decode = "json", max_deliveries = 3, start = "0" }

local function handler(stream, data, meta)
	assert(stream == "cmds", "stream " .. tostring(stream))
	assert(meta.route == "cmd [cmds]", "meta.route " .. tostring(meta.route))
	print(string.format("entry %s %d %s %s", meta.id, meta.deliveries, tostring(data.n), game.GetMap()))
	if data.stop then stop = true end
	if data.change then change = data.change end
	if data.off then
		assert(rt.Off("cmds", "cmd") == true, "Off found the route")
		assert(rt.Off("cmds", "cmd") == false, "Off again finds none")
		HOST.Set("off", "1")
		print("stream: off")
	end
	if data.reload then
		local ok, res = rt.Reload()
		assert(ok, tostring(res))
		print("stream: reloaded")
	end
	if data.fail and meta.deliveries <= data.fail then
		error("failing on purpose, delivery " .. meta.deliveries)
	end
end

local function register()
	local id = rt.Stream("cmds", "cmd", handler, opts)
	assert(id == "cmd", "id " .. tostring(id))
end
-- registered again in every map, unless it was Off when the map changed
if HOST.Get("off") ~= "1" then register() end
rt.On("ctl", "ctl", function(_, msg)
	if msg == "on" then
		register()
		HOST.Set("off", "0")
		print("stream: on")
	end
end)

HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 10, "connected")
	if HOST.Info().maps == 1 then print("stream: ready") end
	while not stop do
		if change then
			HOST.ChangeLevel(change)
			while true do HOST.Yield() end
		end
		HOST.Yield()
	end
	print(string.format("stream: stopped, dead_lettered %d", rt.GetStats().dead_lettered))
end)
