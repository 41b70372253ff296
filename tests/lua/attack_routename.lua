-- Attack: the name under which the shim keeps an On handler is
-- id .. " (" .. pattern .. ")" (module/api/module.go routeName), shared with
-- realtime.Handler's names in one table, and it is not injective:
--   On("b) (c", "a", f1) and On("c", "a (b)", f2) both become "a (b) (c)".
-- The second On silently replaces the first route, and the events queued
-- for f1 (channel "b) (c") are dispatched to f2, registered for "c" only.
-- Likewise realtime.Handler("e (d)", g) takes over On("d", "e", f3).
local T = require "testlib"
local rt = realtime


T.depth(1)
rt.ProcessEvents() -- RealtimeConnected (local)

-- Two On registrations whose names collide.
local f1, f2 = {}, {}
rt.On("b) (c", "a", function(ch) f1[#f1 + 1] = ch end)
for _ = 1, 5 do rt.Publish("b) (c", "for f1") end
T.depth(5)
pcall(rt.On, "c", "a (b)", function(ch) f2[#f2 + 1] = ch end) -- an error is fine; a takeover is not
T.drain()
for _, ch in ipairs(f2) do
	T.eq(ch, "c", "a channel delivered to the handler registered for \"c\"")
end
T.eq(#f1, 5, "events for On(\"b) (c\", \"a\", f1) that reached f1")
pcall(rt.Off, "a")
pcall(rt.Off, "a (b)")

-- A realtime.Handler name that is an On registration's name.
local f3, g = 0, 0
rt.On("d", "e", function() f3 = f3 + 1 end)
pcall(rt.Handler, "e (d)", function() g = g + 1 end) -- an error is fine; a takeover is not
for _ = 1, 3 do rt.Publish("d", "for f3") end
T.depth(3)
T.drain()
T.eq(g, 0, "events of On(\"d\", \"e\", f3) given to realtime.Handler(\"e (d)\", g)")
T.eq(f3, 3, "events that reached f3")
rt.Off("e")

HOST.Run(function() print("attack_routename: ok") end)
