-- Found while writing the fuzzer (tests/lua/fuzz.lua draws Handler names
-- from the route names of On registrations): realtime.On(pattern, id, fn)
-- makes a route named "id (pattern)" whose handler is looked up under that
-- name among realtime.Handler's names, so realtime.Handler("h1 (a:*)", g)
-- silently took the events of On("a:*", "h1", f).
local T = require "testlib"
local R = require "regresslib"
local rt = realtime

local got = {}
rt.On("a:*", "h1", function(ch) got[#got + 1] = "On " .. ch end)
pcall(rt.Handler, "h1 (a:*)", function(ch) got[#got + 1] = "Handler " .. ch end)
rt.Publish("a:1", "x")
R.pump(function() return #got > 0 end, "the event")
T.eq(got[1], "On a:1", "the event of On(\"a:*\", \"h1\", f) went to")
print("regress: ok")
HOST.Exit(0)
