-- Attack: __gc finalizers that raise a number while the pump runs. When
-- an error outside a handler reaches ProcessEvents' own loop, it converts
-- the error object to a string with lua_tolstring, outside any pcall; for
-- a number that allocates, the allocation runs the next pending finalizer,
-- and its error escapes ProcessEvents with the C flag `processing` still
-- set: every later ProcessEvents returns 0 until the next map change, and
-- the queue only grows.
local T = require "testlib"
-- LuaJIT 2.1.0-beta3 itself crashes when a finalizer raises inside JIT-compiled code
-- (reproduced without the module); the interpreter is what this test is about.
if jit then jit.off() end
local rt = realtime
HOST.ExpectErrors("4242", "was removed while events for it waited")

T.depth(1)
rt.ProcessEvents() -- RealtimeConnected (local)

local armed = false -- finalizers raise only inside ProcessEvents
local bomb = { __gc = function() if armed then error(4242, 0) end end }
local handled = 0
rt.On("gc", "gc", function()
	handled = handled + 1
	armed = true
	for _ = 1, 20 do debug.setmetatable(newproxy(true), bomb) end
end)

local escaped
for _ = 1, 300 do
	for i = 1, 50 do rt.Publish("gc", tostring(i)) end
	T.depth(1)
	repeat -- all of it: under qemu one call may not take 50 events in its budget
		local ok, err = pcall(rt.ProcessEvents)
		armed = false
		if not ok then escaped = tostring(err) end
	until escaped or rt.GetStats().queue.depth == 0
	if escaped then break end
end
armed = false
collectgarbage()
collectgarbage()
rt.Off("gc", "gc")

-- Whatever happened above, the pump must work now.
local got = 0
rt.On("after", "after", function() got = got + 1 end)
rt.Publish("after", "x")
local deadline = HOST.Time() + 5
repeat
	rt.ProcessEvents()
until got > 0 or HOST.Time() > deadline
T.ok(got == 1, string.format("the pump works after finalizers raised numbers (an error escaped ProcessEvents: %s; queue depth %d)",
	tostring(escaped), rt.GetStats().queue.depth))
rt.Off("after", "after")

HOST.Run(function() print("attack_gcnumber: ok") end)
