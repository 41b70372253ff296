-- Hostile debug.getinfo (anti-cheats replace it): the pump asks it whether
-- a handler can see meta. Whatever the global does (raises through a
-- metamethod of what it returns, raises through debug's own __index,
-- returns garbage or lies, calls ProcessEvents or Off), every event must reach its
-- handler once, with meta, and none be failed or lost.
local T = require "testlib"
local rt = realtime
local real, real_traceback = debug.getinfo, debug.traceback
local got = {}
rt.On("a:x", "h3", function(ch, data, meta)
	got[#got + 1] = data
	T.eq(type(meta), "table", "meta of " .. data)
	T.eq(meta.route, "h3 (a:x)", "meta.route of " .. data)
end)

local function boom() error("hostile getinfo", 0) end
local cases = {
	{ "a result whose __index raises", function()
		debug.getinfo = function() return setmetatable({}, { __index = boom }) end
	end },
	{ "debug with an __index that raises", function()
		-- (traceback kept: the host's error handlers use it)
		debug = setmetatable({ traceback = real_traceback }, { __index = boom })
	end },
	{ "a result whose __index calls ProcessEvents", function()
		debug.getinfo = function() return setmetatable({}, { __index = function() rt.ProcessEvents(); error("after", 0) end }) end
	end },
	{ "a number", function() debug.getinfo = function() return 5 end end },
	{ "nparams a string", function() debug.getinfo = function() return { nparams = "9", isvararg = "yes" } end end },
	{ "a liar: no parameters, no ...", function()
		-- the module asks the getinfo it found at open, not this one
		debug.getinfo = function() return { nparams = 0, isvararg = false } end
	end },
	{ "getinfo calling ProcessEvents", function()
		debug.getinfo = function(...) rt.ProcessEvents(); return real(...) end
	end },
}

HOST.Run(function()
	local saved = debug
	local sent = 0
	for _, c in ipairs(cases) do
		debug = saved
		debug.getinfo = real
		c[2]()
		for i = 1, 3 do
			sent = sent + 1
			T.ok(rt.Publish("a:x", c[1] .. " #" .. i), "Publish")
			-- one event a call: each call asks getinfo afresh
			HOST.WaitFor(function() rt.ProcessEvents(); return #got == sent end, 5, c[1] .. ": event " .. i .. " handled")
		end
	end
	debug = saved
	debug.getinfo = real
	local s = rt.GetStats()
	T.eq(s.dispatched, sent, "dispatched")
	print("attack_getinfo: ok")
end)
