-- Attack: debug.setupvalue swaps body closures between realtime.*
-- functions. ProcessEvents' body (l_dispatch) casts its rt_out to a pump
-- (module/shim.c: `pump *p = (pump *)out`), so run by another entry, whose
-- rt_out is a plain one on the C stack, it reads and writes past it (stack
-- corruption, a crash).
local T = require "testlib"
local rt = realtime


local _, dispatch = debug.getupvalue(rt.ProcessEvents, 1)
T.eq(type(dispatch), "function", "ProcessEvents' dispatch body")
rt.On("swap", "swap", function() end)
for _ = 1, 100 do rt.Publish("swap", "x") end
T.depth(100)
local _, status = debug.getupvalue(rt.Status, 1)
debug.setupvalue(rt.Status, 1, dispatch)
for _ = 1, 100 do pcall(rt.Status) end
debug.setupvalue(rt.Status, 1, status)
repeat rt.ProcessEvents() until rt.GetStats().queue.depth == 0
rt.Off("swap")

HOST.Run(function() print("attack_upvalue_swap: ok") end)
