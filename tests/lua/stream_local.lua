-- Local mode (no Redis): realtime.Append delivers to the stream routes
-- registered with realtime.Stream on this server, each group once; a
-- handler that raises gets the entry again (meta.deliveries counting up)
-- until max_deliveries, then it is discarded and counted.
local T = require "testlib"
local rt = realtime
HOST.ExpectErrors("failing on purpose", "discarded")
local a, b, fails = {}, {}, {}
T.eq(rt.Stream("jobs", "a", function(stream, data, meta)
	T.eq(stream, "jobs", "stream name")
	a[#a + 1] = string.format("%s:%d:%s", data.n, meta.deliveries, meta.route)
end, { decode = "json" }), "a", "Stream's id")
rt.Stream("jobs", "b", function(_, data) b[#b + 1] = data end, { group = "other" })
rt.Stream("bad", "f", function(_, data, meta)
	fails[#fails + 1] = meta.deliveries
	error("failing on purpose " .. data)
end, { max_deliveries = 2 })

HOST.Run(function()
	T.eq(rt.Status(), "local", "status")
	for i = 1, 3 do
		local id = rt.Append("jobs", { n = i })
		T.ok(type(id) == "string" and id ~= "", "Append returns the entry id: " .. tostring(id))
	end
	T.ok(rt.Append("bad", "x"), "Append to the failing route")
	HOST.WaitFor(function() return #a == 3 and #b == 3 and #fails == 2 end, 10, "local stream entries")
	T.eq(table.concat(a, " "), "1:1:a [jobs] 2:1:a [jobs] 3:1:a [jobs]", "route a, in order, once each")
	T.eq(b[1], '{"n":1}', "route b gets the raw JSON")
	T.eq(table.concat(fails, ","), "1,2", "a failing entry is delivered max_deliveries times")
	HOST.WaitFor(function() return rt.GetStats().dead_lettered == 1 end, 10, "the discarded entry counted")
	T.eq(rt.Off("jobs", "a"), true, "Off")
	rt.Append("jobs", { n = 4 })
	HOST.WaitFor(function() return #b == 4 end, 10, "route b after a's Off")
	T.eq(#a, 3, "no entry for a removed route")
	print("stream_local: ok")
end)
