-- realtime.Stream's arguments and options (tests/streams_lua_test.go), in
-- local mode: each mistake raises an error naming the argument and the
-- option; the valid forms return the id; Off removes the route; a stream
-- read twice with one group is refused.
local T = require "testlib"
local rt = realtime
local fn = function() end
local server = rt.GetStats().server

HOST.Run(function()
	local cases = {
		{ function() rt.Stream("", fn) end, "bad argument #1 to 'Stream' (stream is empty)" },
		{ function() rt.Stream(" s", fn) end, "bad argument #1 to 'Stream' (stream: \" s\" has spaces around the name)" },
		{ function() rt.Stream("s", nil) end, "bad argument #2 to 'Stream' (function expected, got nil)" },
		{ function() rt.Stream("s", "id", "fn") end, "bad argument #3 to 'Stream' (function expected, got string)" },
		{ function() rt.Stream("s", "id", fn, 5) end, "bad argument #4 to 'Stream' (table of options expected, got number)" },
		{ function() rt.Stream("s", fn, { max_deliveries = 0 }) end, "bad argument #3 to 'Stream' (max_deliveries: 0 must be at least 1)" },
		{ function() rt.Stream("s", "id", fn, { max_deliveries = -2 }) end, "bad argument #4 to 'Stream' (max_deliveries: -2 must be at least 1)" },
		{ function() rt.Stream("s", fn, { max_deliveries = 2.5 }) end, "bad argument #3 to 'Stream' (max_deliveries: 2.5 is not a whole number from 1 to 2147483647)" },
		{ function() rt.Stream("s", fn, { max_deliveries = "3" }) end, "bad argument #3 to 'Stream' (max_deliveries: number expected, got string)" },
		{ function() rt.Stream("s", fn, { decode = "xml" }) end, "bad argument #3 to 'Stream' (decode: \"xml\" is not one of \"fields\", \"json\", \"raw\")" },
		{ function() rt.Stream("s", fn, { start = "new" }) end, "bad argument #3 to 'Stream' (start: \"new\" is not \"$\" (new entries) or \"0\" (every entry kept))" },
		{ function() rt.Stream("s", fn, { group = " g" }) end, "bad argument #3 to 'Stream' (group: \" g\" has spaces around the name)" },
		{ function() rt.Stream("s", fn, { group = {} }) end, "bad argument #3 to 'Stream' (group: string expected, got table)" },
		{ function() rt.Stream("s", fn, { claim_after = "abc" }) end, "bad argument #3 to 'Stream' (claim_after: \"abc\" is not a duration" },
		{ function() rt.Stream("s", fn, { claim_after = "500ms" }) end, "bad argument #3 to 'Stream' (claim_after: \"500ms\" is too short" },
		{ function() rt.Stream("s", fn, { claim_after = 0.5 }) end, "bad argument #3 to 'Stream' (claim_after: \"500ms\" is too short" }, -- a number: seconds
		{ function() rt.Stream("s", fn, { maxdeliveries = 3 }) end, "bad argument #3 to 'Stream' (unknown option \"maxdeliveries\" (the options are group, start, decode, max_deliveries and claim_after))" },
		{ function() rt.Stream("s", fn, { rate = "5/s" }) end, "unknown option \"rate\"" },
		{ function() rt.Stream("s", fn, { "raw" }) end, "bad argument #3 to 'Stream' (unknown option number key" },
	}
	for i, c in ipairs(cases) do T.errors(c[1], c[2], "case " .. i) end
	T.eq(next(rt.GetStats().routes), nil, "a refused Stream left a route")

	-- valid forms
	T.eq(rt.Stream("s", "a", fn), "a", "Stream(stream, id, fn)")
	T.eq(rt.Stream("s", "a", fn, { decode = "fields", max_deliveries = 2, start = "0" }), "a", "the same id again replaces it")
	local made = rt.Stream("t", fn, { group = "workers", claim_after = 90 })
	T.ok(made:find("^realtime%.Stream#%d+$"), "a made id: " .. made)
	local routes = rt.GetStats().routes
	T.eq(routes["a [s]"].pattern, "s", "the route of Stream(\"s\", \"a\")")
	T.eq(routes["a [s]"].decode, "fields", "its decode, replaced")
	T.ok(routes[made .. " [t]"], "the route of the made id")
	-- a channel route and a stream route may share an id and a name
	T.eq(rt.On("s", "a", fn), "a", "On with the Stream's id and name")

	-- one stream, one group: refused; another group is fine
	T.errors(function() rt.Stream("s", "b", fn) end,
		"bad argument #1 to 'Stream' (stream \"s\": group \"realtime:" .. server .. "\" is read by the realtime.Stream registration \"a [s]\" and the realtime.Stream registration \"b [s]\"")
	T.eq(rt.Stream("s", "b", fn, { group = "other" }), "b", "another group")

	-- Off: by stream and id, then by id (the On route of id a goes too)
	T.eq(rt.Off("s", "b"), true, "Off(stream, id)")
	T.eq(rt.Off("s", "b"), false, "Off(stream, id) again")
	T.eq(rt.Off("a"), true, "Off(id)")
	T.eq(rt.GetStats().routes["a [s]"], nil, "Off(id) removed the Stream route")
	T.eq(rt.GetStats().routes["a (s)"], nil, "Off(id) removed the On route")
	T.eq(rt.Off("t", made), true, "Off(stream, made id)")
	T.eq(next(rt.GetStats().routes), nil, "routes left")
	print("stream_args: ok")
end)
