-- Attack: an addon loads the module again in the same Lua state
-- (package.loaded.realtime = nil, then require). docs/API.md: "require
-- loads the module once; a later require returns it". The second open made
-- a new realtime table with empty handler tables and started the state
-- over in Go: every handler other addons had registered was gone (their
-- events counted as no_handler, their On registrations swept at the next
-- pump), and registrations made afterwards through a realtime table kept
-- from before (local rt = realtime) were never called.
local T = require "testlib"
local rt = realtime

T.depth(1)
rt.ProcessEvents() -- RealtimeConnected (local)

local got = {}
rt.On("before", "a", function(ch) got[#got + 1] = ch end)
rt.Handler("named", function() end)

package.loaded.realtime = nil
require("realtime")
rt.On("after", "b", function(ch) got[#got + 1] = ch end) -- through the table kept from before
local pump = realtime.ProcessEvents -- the glue's pump would use the new global
rt.Publish("before", "1")
rt.Publish("after", "2")
T.depth(2)
repeat pump() until realtime.GetStats().queue.depth == 0
table.sort(got)
T.eq(table.concat(got, " "), "after before", "handlers called after the second require")
T.eq(rt.GetStats().dropped.no_handler, 0, "events counted as no_handler")
T.ok(realtime == rt, "a second require returns the same realtime table")
rt.Off("a")
rt.Off("b")

HOST.Run(function() print("attack_rerequire: ok") end)
