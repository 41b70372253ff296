-- A handler that calls GetStats and then fails: GetStats counts the events
-- dispatched so far, the running one included, before its outcome is
-- known; the error was then never counted nor logged (and its text,
-- copied into C memory, never freed).
local T = require "testlib"
local rt = realtime
T.depth(1)
T.drain() -- RealtimeConnected
local before = rt.GetStats().dropped.handler_error
local calls = 0
rt.Subscribe("boom", function()
	calls = calls + 1
	rt.GetStats()
	error("boom " .. calls)
end)
for i = 1, 3 do T.ok(rt.Publish("boom", tostring(i)), "Publish") end
local deadline = HOST.Time() + 10
while calls < 3 and HOST.Time() < deadline do rt.ProcessEvents() end
T.eq(calls, 3, "failing handler calls")
T.drain()
local st = rt.GetStats()
T.eq(st.dropped.handler_error - before, 3, "dropped.handler_error of handlers that called GetStats")
local route_errors
for name, r in pairs(st.routes) do
	if name:find("(boom)", 1, true) then route_errors = r.handler_errors end
end
T.eq(route_errors, 3, "the route's handler_errors")
print("attack_ring_stats_error: ok")
HOST.Exit(0)
