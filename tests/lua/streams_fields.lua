-- decode = "fields" (tests/streams_fields_test.go): route "cmds" (stream
-- cmds) calls OnCmd with the entry's fields as a table; it prints each
-- field's name and value in hex, sorted by name, as
--   fields <id> <name hex>=<value hex> ...
-- and a field stop ends the run.
local rt = realtime
local stop = false
local function hex(s)
	return (s:gsub(".", function(c) return string.format("%02x", c:byte()) end))
end
rt.Handler("OnCmd", function(stream, data, meta)
	assert(type(data) == "table", "data is a " .. type(data))
	local names = {}
	for k in pairs(data) do names[#names + 1] = k end
	table.sort(names)
	local out = {}
	for _, k in ipairs(names) do out[#out + 1] = hex(k) .. "=" .. hex(data[k]) end
	print("fields " .. meta.id .. " " .. table.concat(out, " "))
	if data.stop then stop = true end
end)
HOST.Run(function()
	HOST.WaitFor(rt.IsConnected, 10, "connected")
	print("fields: ready")
	while not stop do HOST.Yield() end
end)
