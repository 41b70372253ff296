-- Attack: a handler that loads the module again (package.loaded.realtime
-- = nil, then require, as an addon that reloads its dependencies does)
-- and then calls ProcessEvents. Opening the module cleared the C flag that
-- makes a ProcessEvents call from inside a handler return 0, so the inner
-- call started a pump of its own beside the outer one: it swept the
-- registrations the reopened state had not made yet and took the rest of
-- the outer call's batch (dropped as no_handler), and the outer call kept
-- pointers to events the inner one had handed back to Go.
local T = require "testlib"
local rt = realtime

T.depth(1)
rt.ProcessEvents() -- RealtimeConnected (local)

local N = 600
local handled, inner, reopened = 0, {}, false
local function count()
	handled = handled + 1
	if reopened then return end
	reopened = true
	-- A second require gives the first open's table back (attack_rerequire):
	-- with it gone from the registry, the open starts the state over.
	local reg = debug.getregistry()
	for k, v in pairs(reg) do
		if v == rt then reg[k] = nil end
	end
	package.loaded.realtime = nil
	require("realtime")
	T.ok(realtime ~= rt, "require made a new realtime table")
	inner[#inner + 1] = realtime.ProcessEvents() -- the new table's pump
	inner[#inner + 1] = rt.ProcessEvents() -- the old one's
	inner[#inner + 1] = realtime.ProcessEvents(1)
	-- the reopened state registers its handler again, as its autorun would
	realtime.On("r", "r", count)
end
rt.On("r", "r", count)
for i = 1, N do rt.Publish("r", tostring(i)) end
T.depth(N)

local deadline = HOST.Time() + 10
repeat (reopened and realtime or rt).ProcessEvents() until handled >= N or HOST.Time() > deadline
for i, k in ipairs(inner) do
	T.eq(k, 0, "ProcessEvents call #" .. i .. " from inside the handler (after a reopen) dispatched")
end
T.eq(realtime.GetStats().dropped.no_handler, 0, "events dropped as no_handler")
T.eq(handled, N, "events handled")
realtime.Off("r")

HOST.Run(function() print("attack_reopen: ok") end)
