-- Hostile arguments to realtime.Stream (local mode): a non-string stream,
-- NUL bytes, huge names, option tables with metamethods that raise or
-- yield, Stream and Off from finalizers run while Stream allocates, and
-- Stream/Off storms. Each call either raises a Lua error or registers; the
-- routes and the handler table agree afterwards, and the registry does
-- not grow with the storms.
local T = require "testlib"
local rt = realtime
local fn = function() end

HOST.Run(function()
	local boom = function() error("metamethod ran", 0) end
	local evil = setmetatable({}, { __index = boom, __newindex = boom, __tostring = boom, __len = boom, __pairs = boom })
	-- argument types: each raises (or, for a number, is its string), never crashes
	for i, args in ipairs({
		{ evil, fn }, { {}, fn }, { true, fn }, { fn, fn }, { nil, fn },
		{ "s", evil, fn }, { "s", "id", evil },
		{ "s", fn, setmetatable({ group = evil }, { __index = boom }) },
		{ "s", fn, { max_deliveries = 0 / 0 } }, { "s", fn, { max_deliveries = 1 / 0 } }, { "s", fn, { max_deliveries = -1 / 0 } },
		{ "s", fn, { claim_after = "nan" } }, { "s", fn, { claim_after = 0 / 0 } }, { "s", fn, { claim_after = 1 / 0 } },
		{ "s", fn, { claim_after = "-5" } }, { "s", fn, { claim_after = -5 } },
		{ "s", fn, { [evil] = 1 } }, { "s", fn, { [fn] = 1 } },
	}) do
		local ok, err = pcall(rt.Stream, unpack(args, 1, 4))
		T.ok(not ok, "case " .. i .. " registered")
		T.ok(type(err) == "string" and not err:find("metamethod ran", 1, true), "case " .. i .. ": " .. tostring(err))
	end
	T.eq(next(rt.GetStats().routes), nil, "a refused Stream left a route")
	-- an options table's metamethods are not run: read raw, it is empty
	T.eq(rt.Stream("s", "id", fn, setmetatable({}, { __index = boom, __pairs = boom })), "id", "options with metamethods")
	T.eq(rt.Off("s", "id"), true, "Off of it")
	-- a number stream is its string, as for On
	T.eq(rt.Stream(42, "n", fn), "n", "a number stream")
	T.ok(rt.GetStats().routes["n [42]"], "the route of a number stream")
	T.eq(rt.Off("42", "n"), true, "Off of the number stream")
	-- NUL bytes and a huge name
	T.eq(rt.Stream("a\0b", "z\0", fn), "z\0", "NUL bytes")
	T.ok(rt.GetStats().routes["z\0 [a\0b]"], "the route with NUL bytes")
	T.eq(rt.Off("a\0b", "z\0"), true, "Off with NUL bytes")
	local huge = string.rep("x", 1048576)
	local ok, err = pcall(rt.Stream, huge, "h", fn)
	if ok then T.eq(rt.Off(huge, "h"), true, "Off of the huge stream") end
	-- finalizers calling Stream and Off while Stream allocates
	local ran = 0
	for i = 1, 200 do
		setmetatable({}, { __gc = function()
			ran = ran + 1
			pcall(rt.Stream, "gc" .. (i % 7), "g", fn)
			pcall(rt.Off, "g")
		end })
		rt.Stream("st" .. (i % 5), "x" .. (i % 3), fn, { group = "g" .. i })
		if i % 2 == 0 then rt.Off("x" .. (i % 3)) end
		if i % 50 == 0 then collectgarbage() end
	end
	collectgarbage()
	rt.Off("x0"); rt.Off("x1"); rt.Off("x2"); rt.Off("g")
	T.eq(next(rt.GetStats().routes), nil, "routes left after the storm")
	local n0 = T.registry()
	for i = 1, 2000 do
		rt.Stream("storm" .. (i % 50), "s" .. i, fn)
		T.eq(rt.Off("s" .. i), true, "Off " .. i)
	end
	collectgarbage()
	local n1 = T.registry()
	T.ok(n1 <= n0 + 8, "registry grew from " .. n0 .. " to " .. n1 .. " over 2000 Stream/Off")
	print("attack_stream_args: ok", ran)
end)
