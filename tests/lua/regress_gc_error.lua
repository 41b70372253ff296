-- Issue 11, defect 3: a Lua error raised while ProcessEvents builds an
-- event (here a __gc finalizer that raises, run by an allocation of the
-- shim) unwound past the shim: a crash in _Unwind_RaiseException, or the
-- C flag "processing" stayed set and every later ProcessEvents returned 0.
-- The pump must survive and keep delivering.
local T = require "testlib"
local R = require "regresslib"
local rt = realtime

-- The finalizers raise only while ProcessEvents runs: at an allocation
-- of the shim building an event, or of a handler (a handler error).
local armed = false
local function bomb()
	local u = newproxy(true)
	getmetatable(u).__gc = function() if armed then error("finalizer raised") end end
end

local n = 0
rt.On("g:*", "gc", function()
	n = n + 1
	for _ = 1, 20 do bomb() end
end)
for round = 1, 5 do
	for i = 1, 300 do rt.Publish("g:" .. i, string.rep("p", 200)) end
	T.depth(300)
	local deadline = HOST.Time() + 5
	while rt.GetStats().queue.depth > 0 and HOST.Time() < deadline do
		R.watchdog(10)
		armed = true
		pcall(rt.ProcessEvents)
		armed = false
		R.watchdog(0)
	end
	T.eq(rt.GetStats().queue.depth, 0, "queue after round " .. round .. " (the pump is stuck)")
end
collectgarbage()

local got = false
rt.Subscribe("probe", function() got = true end)
rt.Publish("probe", "x")
R.pump(function() return got end, "a probe event after the finalizer errors")
T.ok(n > 0, "the handler ran")
print("regress: ok")
HOST.Exit(0)
